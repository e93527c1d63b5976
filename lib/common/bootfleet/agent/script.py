"""The agent's /init: a busybox shell script (docs/images.md, "The agent").

Kernel arguments (an image profile's `args`): `bootfleet.status={{ status_url }}` (required: it
carries the node, the token and the way back), `console=ttyS0`, and optionally
`bootfleet.hold_wait=SECONDS` (30: how often a held node reports its inventory again),
`bootfleet.progress_every=SECONDS` (5), `bootfleet.poweroff=1` (power off instead of
rebooting, after a failure too; the e2e tests use it).
"""

AGENT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /etc /mnt
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin  # coreutils' tee and sha256sum, and zstd, before busybox (build.py's TOOLS)
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
[ -d /sys/firmware/efi ] && mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null

say() { echo "bootfleet-agent: $*"; }
arg() { for word in $(cat /proc/cmdline); do case "$word" in "$1="*) echo "${word#*=}" ;; esac; done; }
STATUS=$(arg bootfleet.status)
HOLD_WAIT=$(arg bootfleet.hold_wait); HOLD_WAIT=${HOLD_WAIT:-30}
EVERY=$(arg bootfleet.progress_every); EVERY=${EVERY:-5}
POWEROFF=$(arg bootfleet.poweroff)
NODE_URL=${STATUS%%/progress\?*}
TOKEN=${STATUS##*token=}
TARGET=

finish() {
  sync
  if [ "$1" = reboot ] && [ "$POWEROFF" != 1 ]; then say "rebooting"; reboot -f; fi
  say "powering off"; poweroff -f; sleep 60
}
# A JSON string of printable text: no quotes, backslashes or control characters.
clean() { tr -cd 'A-Za-z0-9 ._:/+=@,()-' | cut -c1-250; }
post() {  # URL JSON -> /tmp/answer
  wget -q -O /tmp/answer --header "Content-Type: application/json" --post-data "$2" "$1"
}
report() {  # STAGE MESSAGE [BYTES TOTAL]
  extra=""
  [ -n "$3" ] && extra=",\"bytes\":$3,\"total\":$4"
  if post "$STATUS" "{\"stage\":\"$1\",\"message\":\"$(echo "$2" | clean)\"$extra}"; then
    say "reported $1: $2"
  else
    say "could not report $1: $2"; return 1
  fi
}
wipe() {  # DISK [nosync]: its signatures, the first and last MiB (partition tables, GPT backup, boot code)
  [ -b "$1" ] || return 0
  sectors=$(cat "/sys/class/block/${1#/dev/}/size")
  sync=conv=fsync; [ "$2" = nosync ] && sync=
  dd if=/dev/zero of="$1" bs=1M count=1 $sync 2>/dev/null
  [ "$sectors" -gt 4096 ] && dd if=/dev/zero of="$1" bs=512 seek=$((sectors - 2048)) count=2048 $sync 2>/dev/null
  blockdev --rereadpt "$1" 2>/dev/null
  [ "$2" = nosync ] || sync
}
fail() {
  say "FAILED: $*"
  if [ -n "$TARGET" ]; then wipe "$TARGET"; say "wiped the first and last MiB of $TARGET: nothing half-written boots"; fi
  report failed "$*"
  finish poweroff
}

say "kernel $(uname -r) up"
[ -n "$STATUS" ] || { say "no bootfleet.status= on the kernel command line"; finish poweroff; }
for module in $(cat /etc/modules-order); do insmod "/lib/modules/$module.ko" 2>/dev/null; done
sleep 1

# --- network: DHCP on the first interface that gets an address --------------------------------
ip link set lo up
up=""
for n in 1 2 3 4 5 6 7 8 9 10; do
  for dev in $(ls /sys/class/net); do
    [ "$dev" = lo ] && continue
    ip link set "$dev" up
    if udhcpc -i "$dev" -s /etc/udhcpc.script -q -n -t 3 -T 1 >/dev/null 2>&1; then up=$dev; break 2; fi
  done
  sleep 1
done
[ -n "$up" ] || { say "no DHCP answer on any interface"; finish poweroff; }
say "network up on $up: $(ip -4 -o addr show dev "$up" | awk '{print $4}')"

# --- inventory ----------------------------------------------------------------------------------
pci_path() {  # something like udev's by-path: pci-0000:00:01.1-ata-1
  link=$(readlink -f "/sys/class/block/$1")
  pci=$(echo "$link" | tr '/' '\n' | grep -E '^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f]$' | tail -n 1)
  ata=$(echo "$link" | tr '/' '\n' | grep -E '^ata[0-9]+$' | head -n 1)
  scsi=$(echo "$link" | tr '/' '\n' | grep -E '^[0-9]+:[0-9]+:[0-9]+:[0-9]+$' | tail -n 1)
  out="pci-$pci"
  [ -n "$ata" ] && out="$out-ata-${ata#ata}"
  [ -z "$ata" ] && [ -n "$scsi" ] && out="$out-scsi-$scsi"
  echo "$out"
}
disk_serial() {
  for f in "/sys/class/block/$1/serial" "/sys/class/block/$1/device/serial"; do
    [ -r "$f" ] && { clean < "$f" | sed 's/^ *//;s/ *$//'; return; }
  done
  [ -r "/sys/class/block/$1/device/vpd_pg80" ] && dd if="/sys/class/block/$1/device/vpd_pg80" bs=1 skip=4 2>/dev/null | clean | sed 's/^ *//;s/ *$//'
}
disks() {  # the machine's disks: not loop, ram, CD-ROM or floppy devices, nor partitions
  for d in $(ls /sys/block); do
    case "$d" in loop*|ram*|sr*|fd*|zram*|dm-*|md*) continue ;; esac
    [ "$(cat /sys/block/$d/size)" -gt 0 ] && echo "$d"
  done
}
inventory() {
  cpus=$(grep -c '^processor' /proc/cpuinfo)
  mem=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
  js="{\"cpus\":$cpus,\"memory_mib\":$mem,\"disks\":["
  sep=""
  for d in $(disks); do
    size=$(( $(cat /sys/block/$d/size) * 512 ))
    model=$(cat /sys/block/$d/device/model 2>/dev/null | clean | sed 's/ *$//')
    rot=$(cat /sys/block/$d/queue/rotational 2>/dev/null)
    case "$rot" in 1) rot=true ;; 0) rot=false ;; *) rot=null ;; esac
    js="$js$sep{\"name\":\"$d\",\"size_bytes\":$size,\"model\":\"$model\",\"serial\":\"$(disk_serial $d)\",\"rotational\":$rot,\"by_path\":\"$(pci_path $d)\"}"
    sep=","
  done
  js="$js],\"nics\":["
  sep=""
  for n in $(ls /sys/class/net); do
    [ "$n" = lo ] && continue
    [ -e "/sys/class/net/$n/device" ] || continue
    driver=$(basename "$(readlink /sys/class/net/$n/device/driver)" 2>/dev/null | clean)
    speed=$(cat /sys/class/net/$n/speed 2>/dev/null)
    case "$speed" in ''|-*) speed=null ;; esac
    link=$(cat /sys/class/net/$n/carrier 2>/dev/null)
    case "$link" in 1) link=true ;; 0) link=false ;; *) link=null ;; esac
    js="$js$sep{\"name\":\"$n\",\"mac\":\"$(cat /sys/class/net/$n/address)\",\"driver\":\"$driver\",\"speed_mbps\":$speed,\"link\":$link}"
    sep=","
  done
  mode=bios; secure=null
  if [ -d /sys/firmware/efi ]; then
    mode=uefi; secure=false
    sb=$(ls /sys/firmware/efi/efivars/SecureBoot-* 2>/dev/null | head -n 1)
    [ -n "$sb" ] && [ "$(dd if="$sb" bs=1 skip=4 count=1 2>/dev/null | od -An -tu1 | tr -d ' ')" = 1 ] && secure=true
  fi
  dmi() { cat "/sys/class/dmi/id/$1" 2>/dev/null | clean | sed 's/ *$//'; }
  js="$js],\"firmware\":{\"mode\":\"$mode\",\"secure_boot\":$secure},"
  js="$js\"system\":{\"vendor\":\"$(dmi sys_vendor)\",\"product\":\"$(dmi product_name)\",\"serial\":\"$(dmi product_serial)\"}}"
  echo "$js"
}

INVENTORY_URL="$NODE_URL/inventory?token=$TOKEN"
while :; do
  inventory > /tmp/inventory.json
  post "$INVENTORY_URL" "$(cat /tmp/inventory.json)" || fail "could not report the inventory"
  say "inventory reported: $(cat /tmp/answer)"
  grep -q '"passed": *true' /tmp/answer && break
  say "HELD: the inventory fails the profile's requirements; reporting it again in $HOLD_WAIT s"
  sleep "$HOLD_WAIT"
done

# --- the plan -----------------------------------------------------------------------------------
wget -q -O /tmp/plan "$NODE_URL/image-plan?token=$TOKEN" || fail "could not fetch the image plan"
while IFS='=' read -r key value; do
  case "$key" in
    url) URL=$value ;; sha256) SHA=$value ;; size_bytes) SIZE=$value ;; compression) COMP=$value ;;
    disk_rule) RULE=$value ;; disk_serial) WANT_SERIAL=$value ;; disk_path) WANT_PATH=$value ;;
    seed_url) SEED=$value ;;
  esac
done < /tmp/plan
say "plan: $SIZE bytes ($COMP) to the disk chosen by rule $RULE"

# --- the target disk ----------------------------------------------------------------------------
best=""; best_size=""
for d in $(disks); do
  size=$(( $(cat /sys/block/$d/size) * 512 ))
  case "$RULE" in
    serial) [ "$(disk_serial $d)" = "$WANT_SERIAL" ] && { best=$d; best_size=$size; } ;;
    path) [ "$(pci_path $d)" = "$WANT_PATH" ] && { best=$d; best_size=$size; } ;;
    smallest) [ "$size" -ge "$SIZE" ] && { [ -z "$best" ] || [ "$size" -lt "$best_size" ]; } && { best=$d; best_size=$size; } ;;
    *) { [ -z "$best" ] || [ "$size" -gt "$best_size" ]; } && { best=$d; best_size=$size; } ;;
  esac
done
case "$RULE" in
  serial) [ -n "$best" ] || fail "no disk with serial $WANT_SERIAL (disks: $(disks | tr '\n' ' '))" ;;
  path) [ -n "$best" ] || fail "no disk at path $WANT_PATH (disks: $(disks | tr '\n' ' '))" ;;
  smallest) [ -n "$best" ] || fail "no disk holds the image ($SIZE bytes; disks: $(disks | tr '\n' ' '))" ;;
  *) [ -n "$best" ] || fail "no disk found" ;;
esac
[ "$best_size" -ge "$SIZE" ] || fail "disk $best ($best_size bytes) is smaller than the image ($SIZE bytes)"
TARGET=/dev/$best
case "$COMP" in
  gz) DECOMP="gunzip -c" ;; xz) DECOMP="unxz -c" ;; none) DECOMP="" ;;
  zstd) DECOMP="zstd -dcq" ;;
  *) fail "unknown compression $COMP" ;;
esac

# --- the write: signatures wiped, the image streamed, its checksum computed on the way --------
report installing "writing the image to $TARGET" 0 "$SIZE"
wipe "$TARGET" nosync  # flushed with the image by the sync after the write (a failure wipes again, with fsync)
rm -f /tmp/sum.fifo /tmp/sum /tmp/write.rc /tmp/write.log
mkfifo /tmp/sum.fifo
sha256sum < /tmp/sum.fifo > /tmp/sum &
SUMPID=$!
sectors_written() { awk '{print $7}' "/sys/block/$best/stat"; }
START=$(sectors_written)
# With more than one CPU, sha256sum runs beside wget, tee and dd (docs/benchmarks.md, "Image
# write"). dd bs=1M, not tee writing the disk itself: measured faster in the agent's VM.
(
  set -o pipefail
  if [ -n "$DECOMP" ]; then
    wget -q -O- "$URL" | tee /tmp/sum.fifo | $DECOMP | dd of="$TARGET" bs=1M
  else
    wget -q -O- "$URL" | tee /tmp/sum.fifo | dd of="$TARGET" bs=1M
  fi
  echo $? > /tmp/write.rc
) 2>/tmp/write.log &
WRITER=$!
(  # progress, every $EVERY seconds, beside the write (stopped as soon as the write ends)
  while :; do
    sleep "$EVERY"
    done_bytes=$(( ($(sectors_written) - START) * 512 ))
    [ "$done_bytes" -gt "$SIZE" ] && done_bytes=$SIZE
    report installing "writing the image to $TARGET: $((done_bytes * 100 / SIZE))%" "$done_bytes" "$SIZE" >/dev/null
  done
) &
REPORTER=$!
wait $WRITER
kill $REPORTER 2>/dev/null
wait $SUMPID
sync
written=$(( ($(sectors_written) - START) * 512 ))
got=$(cut -d' ' -f1 /tmp/sum)
# The checksum is of the file as stored: when it matches, every byte came, so what was written is
# the image whole. A stream that ends early fails wget or the decompressor (the exit status), or the checksum.
[ "$(cat /tmp/write.rc)" = 0 ] || fail "download failed or was cut after about $written of $SIZE bytes ($(tail -n 1 /tmp/write.log | clean))"
[ "$got" = "$SHA" ] || fail "checksum mismatch: the image has sha256 $got, its profile says $SHA"
report installing "image written and verified: $SIZE bytes, sha256 ok" "$SIZE" "$SIZE"

# --- the config for first boot: a NoCloud seedfrom drop-in in the installed root ---------------
blockdev --rereadpt "$TARGET" 2>/dev/null
sleep 1
handed=""
for p in $(ls /sys/block/$best | grep "^$best"); do
  for fs in ext4 xfs btrfs; do
    mount -t "$fs" "/dev/$p" /mnt 2>/dev/null || continue
    if [ -d /mnt/etc/cloud ]; then
      mkdir -p /mnt/etc/cloud/cloud.cfg.d
      printf '%s\n' "# Written by the bootfleet agent: this machine's config comes from bootfleet (NoCloud)." \
        "datasource_list: [ NoCloud, None ]" "datasource:" "  NoCloud:" "    seedfrom: $SEED" \
        > /mnt/etc/cloud/cloud.cfg.d/90-bootfleet.cfg
      handed="$p"
    fi
    umount /mnt
    break
  done
  [ -n "$handed" ] && break
done
if [ -n "$handed" ]; then
  msg="config handed over on $handed (/etc/cloud/cloud.cfg.d/90-bootfleet.cfg)"
else
  msg="no root with /etc/cloud found: no config handed over (the image must fetch its own)"
fi
report rebooting "image installed on $TARGET; $msg; rebooting into it"
finish reboot
"""

UDHCPC_SCRIPT = r"""#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    if [ -n "$router" ]; then ip route add default via "${router%% *}" dev "$interface"; fi
    ;;
esac
"""
