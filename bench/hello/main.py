"""The yardstick for bootfleet's benchmarks: a functions-framework hello world that answers
an iPXE script of the same shape as a node script, with no database and no library.

    functions-framework --target hello --source bench/hello/main.py --port 8081
"""

SCRIPT = """#!ipxe
echo hello: node 00000000-0000-0000-0000-000000000000 boots profile hello
kernel http://127.0.0.1/images/vmlinuz console=ttyS0 || goto failed
initrd http://127.0.0.1/images/initrd.img || goto failed
boot || goto failed
:failed
echo hello: could not load the boot files; retrying in 30 s
sleep 30
chain --autofree http://127.0.0.1/boot/ipxe
"""


def hello(request):
    return SCRIPT, 200, {"Content-Type": "text/plain; charset=utf-8"}
