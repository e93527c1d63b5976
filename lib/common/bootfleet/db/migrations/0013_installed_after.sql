-- A profile's installer may reboot into the installed system without reporting `rebooting`
-- first (coreos-installer as Fedora CoreOS ships it). installed_after names the stage from
-- which a repeated boot means "installed, boot the disk": the node moves to `rebooting` and
-- is told to boot its local disk, instead of having its install opened again (db/boot.py;
-- docs/installers.md). NULL: every repeated boot before `rebooting` restarts the install.
ALTER TABLE profile ADD COLUMN installed_after text
    CHECK (installed_after IN ('configuring', 'installing'));
