#!/usr/bin/env python
"""Build the Xen lab's artifacts: Xen 4.17 hypervisors, a Debian 12 dom0 image, a PV guest payload.

Everything is built from Debian 12's own packages (stdlib only; run as root on Debian 12):

* ``xen``: Debian's ``xen-hypervisor-4.17-amd64``, unzipped (QEMU's ``-kernel`` takes the multiboot
  ELF, not the gzipped file GRUB loads).
* ``xen-shadow``: the same hypervisor rebuilt from Debian's source package with
  ``CONFIG_SHADOW_PAGING=y``. Debian builds it without shadow paging; a PV guest's live migration
  needs it to log dirty pages ("xc: Failed to enable logdirty: 95"), so the lab boots this one.
* ``vmlinuz`` + ``dom0-initrd.img``: Debian's 6.1 kernel, the PV dom0 and also the PV guests' kernel.
* ``dom0.img``: an ext4 image of a debootstrapped dom0 (xen-utils-4.17, libvirt's libxl driver,
  python3-libvirt, openssh-server, systemd), made with ``mkfs.ext4 -d`` (no loop mount). It holds
  the guest's kernel and initramfs (``/var/lib/xdrs-lab/``), so every host has them at one path.
* ``lab_key`` / ``lab_key.pub``: the lab's root ssh key (also inside the image: the hosts ssh to each
  other with it for ``xen+ssh://`` migration). For this lab only.

Artifacts are cached in ``$XEN_DRS_XENLAB_CACHE`` (default ``/var/cache/xen-drs/xenlab``), outside the
checkout (CI clones afresh), in a directory named after a hash of their inputs: this file, the files
beside it that go into the image, and the versions of the Debian packages used. A later build with
the same inputs reuses them; each stage also resumes where an interrupted build stopped.

    python tests/xenlab/build.py            # build (or find) the artifacts; prints their directory
    python tests/xenlab/build.py --print    # the directory they are (or would be) in; builds nothing
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE_ROOT = Path(os.environ.get("XEN_DRS_XENLAB_CACHE", "/var/cache/xen-drs/xenlab"))
XEN_PACKAGE = "xen-hypervisor-4.17-amd64"
KERNEL_META = "linux-image-amd64"
DEBOOTSTRAP_INCLUDE = "systemd-sysv,udev,kmod,iproute2,busybox,initramfs-tools,procps"
DOM0_PACKAGES = [
    "xen-utils-4.17", "xen-utils-common", "libvirt-daemon-system", "libvirt-daemon-driver-xen",
    "libvirt-clients", "python3-libvirt", "openssh-server", "openssh-client", "netcat-openbsd",
    "iputils-ping", "ca-certificates",
    # the apt module of the roles (xen.drs.hypervisor) needs python3-apt on the host
    "python3-apt",
    # the storage roles on real hosts: the dom0 kernel has iscsi_tcp (xen.drs.iscsi_initiator), and
    # xen1 serves the pool's LUN with tgt (xen.drs.iscsi_target)
    "open-iscsi", "tgt",
]
# Kernel modules the dom0 does not need (the image is smaller and mkfs faster without them).
UNNEEDED_MODULES = ["sound", "drivers/media", "drivers/gpu", "drivers/infiniband", "drivers/iio",
                    "drivers/staging", "drivers/hwmon", "drivers/usb", "drivers/hid", "drivers/bluetooth",
                    "drivers/isdn", "drivers/net/wireless", "net/bluetooth", "net/mac80211", "net/wireless"]
IMAGE_SIZE = "1800M"
GUEST_DIR = "/var/lib/xdrs-lab"  # in dom0: the guests' kernel and initramfs
# Units a lab dom0 does not need at boot (every second counts under emulation).
MASKED_UNITS = ["serial-getty@hvc0.service", "getty@tty1.service", "libvirt-guests.service",
                "xendomains.service", "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_reap.service",
                "systemd-timesyncd.service"]
# Hosts known to every dom0 and the controller (addresses exist only in the lab's namespace).
LAB_HOSTS = {"xen1": "10.213.0.1", "xen2": "10.213.0.2", "xen3": "10.213.0.3", "ctl": "10.213.0.254"}


class BuildError(RuntimeError):
    """An artifact could not be built."""


def log(msg: str) -> None:
    print(f"xenlab build: {msg}", flush=True)


def run(cmd, check=True, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, text=True, capture_output=True, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise BuildError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n"
                         f"{(proc.stdout + proc.stderr)[-3000:]}")
    return proc


def mirrors() -> tuple[str, str]:
    """The Debian mirrors this machine's apt uses (main, security), from its deb822 sources."""
    main = security = ""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:"):
                uri = line.split()[1]
                if "security" in uri:
                    security = security or uri
                else:
                    main = main or uri
    return main or "http://deb.debian.org/debian", security or "http://deb.debian.org/debian-security"


def candidate(package: str) -> str:
    out = run(["apt-cache", "policy", package]).stdout
    for line in out.splitlines():
        if line.strip().startswith("Candidate:"):
            version = line.split()[1]
            if version != "(none)":
                return version
    raise BuildError(f"no candidate version for {package} (run apt-get update?)")


def kernel_package() -> str:
    for line in run(["apt-cache", "depends", KERNEL_META]).stdout.splitlines():
        if "Depends:" in line and "linux-image-" in line:
            return line.split()[-1]
    raise BuildError(f"cannot resolve {KERNEL_META} to a kernel package")


class Build:
    def __init__(self):
        self.kernel_pkg = kernel_package()
        self.kver = self.kernel_pkg.removeprefix("linux-image-")
        self.versions = {XEN_PACKAGE: candidate(XEN_PACKAGE), self.kernel_pkg: candidate(self.kernel_pkg),
                         "xen-utils-4.17": candidate("xen-utils-4.17")}
        self.dir = CACHE_ROOT / self.input_hash()
        self.work = self.dir / "work"
        self.main_mirror, self.security_mirror = mirrors()

    def input_hash(self) -> str:
        h = hashlib.sha256()
        for path in [Path(__file__).resolve(), HERE / "guest-init.sh", *sorted((HERE / "dom0").iterdir())]:
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        h.update(json.dumps(self.versions, sort_keys=True).encode())
        return h.hexdigest()[:16]

    # -- stages: each writes its marker when done, so an interrupted build resumes ---------------

    def stage(self, name: str, action) -> None:
        marker = self.work / f"{name}.done"
        if marker.exists():
            log(f"{name}: cached")
            return
        started = time.monotonic()
        log(f"{name}: building")
        action()
        marker.write_text(f"{time.monotonic() - started:.0f}\n")
        log(f"{name}: done in {time.monotonic() - started:.0f} s")

    def fetch(self) -> None:
        debs = self.work / "debs"
        shutil.rmtree(debs, ignore_errors=True)
        debs.mkdir(parents=True)
        run(["apt-get", "download", f"{XEN_PACKAGE}={self.versions[XEN_PACKAGE]}",
             f"{self.kernel_pkg}={self.versions[self.kernel_pkg]}"], cwd=debs)
        pkgroot = self.work / "pkgroot"
        shutil.rmtree(pkgroot, ignore_errors=True)
        for deb in sorted(debs.glob("*.deb")):
            run(["dpkg-deb", "-x", str(deb), str(pkgroot)])
        with gzip.open(pkgroot / "boot" / "xen-4.17-amd64.gz") as src, open(self.dir / "xen", "wb") as dst:
            shutil.copyfileobj(src, dst)
        shutil.copy2(pkgroot / "boot" / f"vmlinuz-{self.kver}", self.dir / "vmlinuz")

    def shadow(self) -> None:
        """The hypervisor rebuilt with shadow paging, from Debian's source package."""
        src = self.work / "xensrc"
        shutil.rmtree(src, ignore_errors=True)
        (src / "lists" / "partial").mkdir(parents=True)
        # The source of the security update first (it matches the tools); the release's otherwise.
        for suite_mirror, suite in ((self.security_mirror, "bookworm-security"), (self.main_mirror, "bookworm")):
            (src / "src.list").write_text(f"deb-src {suite_mirror} {suite} main\n")
            opts = ["-o", f"Dir::Etc::SourceList={src / 'src.list'}", "-o", "Dir::Etc::SourceParts=-",
                    "-o", f"Dir::State::Lists={src / 'lists'}"]
            run(["apt-get", *opts, "update"])
            got = run(["apt-get", *opts, "source", "--download-only", "xen"], cwd=src, check=False)
            if got.returncode == 0:
                break
            log(f"shadow: no xen source in {suite} ({got.stderr.strip().splitlines()[-1:]}); trying the next")
        else:
            raise BuildError("no Debian source package for xen could be downloaded")
        dsc = sorted(src.glob("xen_*.dsc"))[-1]
        (self.work / "xen-source-version").write_text(dsc.name + "\n")
        run(["dpkg-source", "-x", dsc.name, "tree"], cwd=src)
        tree = src / "tree"
        config = (self.work / "pkgroot" / "boot" / "xen-4.17-amd64.config").read_text()
        if "# CONFIG_SHADOW_PAGING is not set" not in config and "CONFIG_SHADOW_PAGING=y" not in config:
            raise BuildError("Debian's hypervisor config has no CONFIG_SHADOW_PAGING line")
        (tree / "xen" / ".config").write_text(
            config.replace("# CONFIG_SHADOW_PAGING is not set", "CONFIG_SHADOW_PAGING=y"))
        run(["make", "-C", "xen", "olddefconfig"], cwd=tree)
        run(["make", "-C", "xen", f"-j{os.cpu_count() or 2}"], cwd=tree)
        if "CONFIG_SHADOW_PAGING=y" not in (tree / "xen" / ".config").read_text():
            raise BuildError("the rebuilt hypervisor's config lost CONFIG_SHADOW_PAGING=y")
        shutil.copy2(tree / "xen" / "xen", self.dir / "xen-shadow")
        shutil.rmtree(tree)

    def rootfs(self) -> None:
        root = self.work / "rootfs"
        shutil.rmtree(root, ignore_errors=True)
        run(["debootstrap", "--variant=minbase", f"--include={DEBOOTSTRAP_INCLUDE}", "bookworm", str(root),
             self.main_mirror])
        (root / "etc" / "apt" / "sources.list").write_text(
            f"deb {self.main_mirror} bookworm main\ndeb {self.main_mirror} bookworm-updates main\n"
            f"deb {self.security_mirror} bookworm-security main\n")
        # No service starts inside the chroot.
        policy = root / "usr" / "sbin" / "policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        with chroot_mounts(root):
            run(["chroot", str(root), "apt-get", "update"])
            run(["chroot", str(root), "apt-get", "install", "-y", "--no-install-recommends", *DOM0_PACKAGES],
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            installed = run(["chroot", str(root), "dpkg-query", "-W", "-f", "${Version}", "xen-utils-4.17"]).stdout
            (self.work / "xen-utils-version").write_text(installed + "\n")
            run(["chroot", str(root), "apt-get", "clean"])
        policy.unlink()
        # The kernel's modules from the unpacked package (merged /usr: under usr/lib/modules).
        modules = root / "usr" / "lib" / "modules" / self.kver
        shutil.rmtree(modules, ignore_errors=True)
        shutil.copytree(self.work / "pkgroot" / "lib" / "modules" / self.kver, modules, symlinks=True)
        for sub in UNNEEDED_MODULES:
            shutil.rmtree(modules / "kernel" / sub, ignore_errors=True)
        for name in ("vmlinuz", "config", "System.map"):
            shutil.copy2(self.work / "pkgroot" / "boot" / f"{name}-{self.kver}", root / "boot")
        run(["chroot", str(root), "depmod", "-a", self.kver])
        conf = root / "etc" / "initramfs-tools" / "initramfs.conf"
        conf.write_text("".join("MODULES=list\n" if line.startswith("MODULES=") else line + "\n"
                                for line in conf.read_text().splitlines()))
        with open(root / "etc" / "initramfs-tools" / "modules", "a") as f:
            f.write("virtio_pci\nvirtio_blk\nvirtio_net\next4\n")
        with chroot_mounts(root):
            run(["chroot", str(root), "mkinitramfs", "-o", f"/boot/initrd.img-{self.kver}", self.kver])
        shutil.copy2(root / "boot" / f"initrd.img-{self.kver}", self.dir / "dom0-initrd.img")

    def guest(self) -> None:
        """The PV guest's initramfs: static busybox and tests/xenlab/guest-init.sh as /init."""
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for d in ("bin", "dev", "proc", "sys"):
                (root / d).mkdir()
            shutil.copy2("/bin/busybox", root / "bin" / "busybox")
            os.symlink("busybox", root / "bin" / "sh")  # the interpreter of /init
            shutil.copy2(HERE / "guest-init.sh", root / "init")
            # the PV block front-end (a module in Debian's kernel), for guests with a disk
            (root / "lib" / "modules").mkdir(parents=True)
            shutil.copy2(self.work / "pkgroot" / "lib" / "modules" / self.kver / "kernel" / "drivers" / "block"
                         / "xen-blkfront.ko", root / "lib" / "modules" / "xen-blkfront.ko")
            (root / "init").chmod(0o755)
            files = run(["find", "."], cwd=root).stdout
            cpio = subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"], cwd=root,
                                  input=files.encode(), capture_output=True, check=False)
            if cpio.returncode != 0:
                raise BuildError(f"cpio failed: {cpio.stderr.decode(errors='replace')}")
            (self.work / "guest.gz").write_bytes(gzip.compress(cpio.stdout, compresslevel=6))

    def configure(self) -> None:
        root = self.work / "rootfs"
        (root / "etc" / "fstab").write_text("/dev/vda / ext4 rw,noatime 0 1\n")
        (root / "etc" / "hostname").write_text("xen\n")
        (root / "etc" / "hosts").write_text(
            "127.0.0.1 localhost\n" + "".join(f"{a} {h}\n" for h, a in LAB_HOSTS.items()))
        (root / "etc" / "machine-id").write_text("")  # each boot makes its own
        # Guest consoles logged in dom0 with a time stamp per line, so tests read the guests' ticks
        # and see how long a migrating guest was silent.
        default_xen = root / "etc" / "default" / "xen"
        lines = [line for line in default_xen.read_text().splitlines() if not line.startswith("XENCONSOLED_ARGS")]
        default_xen.write_text("\n".join(lines + ['XENCONSOLED_ARGS="--log=guest --log-dir=/var/log/xen/console --timestamp=guest"']) + "\n")
        (root / "var" / "log" / "xen" / "console").mkdir(parents=True, exist_ok=True)
        # The lab's root key: the controller's way in, and the hosts' way to each other.
        key = self.dir / "lab_key"
        if not key.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "xen.drs xen lab", "-f", str(key)])
        ssh = root / "root" / ".ssh"
        ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copy2(key, ssh / "id_ed25519")
        shutil.copy2(key.with_suffix(".pub"), ssh / "id_ed25519.pub")
        shutil.copy2(key.with_suffix(".pub"), ssh / "authorized_keys")
        (ssh / "config").write_text("Host *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
                                    "  LogLevel ERROR\n")
        for path in ssh.iterdir():
            path.chmod(0o600)
        for key_file in (root / "etc" / "ssh").glob("ssh_host_*"):
            key_file.unlink()
        run(["chroot", str(root), "ssh-keygen", "-A"])
        (root / "etc" / "ssh" / "sshd_config.d" / "xdrs-lab.conf").write_text(
            "UseDNS no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n")
        # Guest payload at one path on every host.
        guest_dir = root / GUEST_DIR.lstrip("/")
        guest_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.work / "guest.gz", guest_dir / "guest.gz")
        shutil.copy2(root / "boot" / f"vmlinuz-{self.kver}", guest_dir / "vmlinuz")
        # Boot-time identity and a ready line on the console.
        shutil.copy2(HERE / "dom0" / "xdrs-lab-boot", root / "usr" / "local" / "sbin" / "xdrs-lab-boot")
        (root / "usr" / "local" / "sbin" / "xdrs-lab-boot").chmod(0o755)
        units = root / "etc" / "systemd" / "system"
        for unit in ("xdrs-lab-boot.service", "xdrs-lab-ready.service"):
            shutil.copy2(HERE / "dom0" / unit, units / unit)
            wants = units / "multi-user.target.wants"
            wants.mkdir(exist_ok=True)
            link = wants / unit
            if not link.is_symlink():
                link.symlink_to(f"/etc/systemd/system/{unit}")
        dropin = units / "libvirtd.service.d"
        dropin.mkdir(exist_ok=True)
        shutil.copy2(HERE / "dom0" / "libvirtd-after-xen.conf", dropin / "after-xen.conf")
        for unit in MASKED_UNITS:
            link = units / unit
            if link.exists() or link.is_symlink():
                link.unlink()
            link.symlink_to("/dev/null")

    def image(self) -> None:
        image = self.dir / "dom0.img"
        image.unlink(missing_ok=True)
        run(["mkfs.ext4", "-q", "-F", "-L", "dom0", "-d", str(self.work / "rootfs"), str(image), IMAGE_SIZE])

    def manifest(self) -> dict:
        return {
            "dir": str(self.dir), "kernel": self.kver, "packages": self.versions,
            "xen_source": _read(self.work / "xen-source-version"),
            "xen_utils_installed": _read(self.work / "xen-utils-version"),
            "guest_kernel": f"{GUEST_DIR}/vmlinuz", "guest_initrd": f"{GUEST_DIR}/guest.gz",
            "stage_seconds": {m.stem.removesuffix(".done"): int(m.read_text()) for m in self.work.glob("*.done")},
        }

    def build(self) -> dict:
        if (self.dir / "manifest.json").exists():
            log(f"cached in {self.dir}")
            return json.loads((self.dir / "manifest.json").read_text())
        started = time.monotonic()
        self.work.mkdir(parents=True, exist_ok=True)
        self.stage("fetch", self.fetch)
        self.stage("guest", self.guest)
        # The hypervisor's compile (CPU) and the rootfs (mostly downloads) run side by side.
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(self.stage, "shadow", self.shadow),
                       pool.submit(self.stage, "rootfs", self.rootfs)]
            for future in futures:
                future.result()
        self.stage("configure", self.configure)
        self.stage("image", self.image)
        manifest = self.manifest()
        manifest["build_seconds"] = round(time.monotonic() - started)
        (self.dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        # The work tree (rootfs, sources) is only needed to build: keep the artifacts.
        shutil.rmtree(self.work / "rootfs", ignore_errors=True)
        shutil.rmtree(self.work / "xensrc", ignore_errors=True)
        prune(keep=self.dir)
        log(f"built in {manifest['build_seconds']} s: {self.dir}")
        return manifest


def _read(path: Path) -> str | None:
    return path.read_text().strip() if path.exists() else None


class chroot_mounts:  # pylint: disable=invalid-name
    """/proc, /sys and /dev bound into a chroot for as long as the block runs."""

    def __init__(self, root: Path):
        self.points = [root / "proc", root / "sys", root / "dev"]

    def __enter__(self):
        for point, source in zip(self.points, ("/proc", "/sys", "/dev")):
            run(["mount", "--bind", source, str(point)])
        return self

    def __exit__(self, *exc):
        for point in reversed(self.points):
            run(["umount", "-l", str(point)], check=False)


def prune(keep: Path) -> None:
    """Other builds' directories: each is a few GB, and only the current inputs' one is used."""
    for other in CACHE_ROOT.iterdir():
        if other.is_dir() and other != keep:
            log(f"removing an older build: {other}")
            shutil.rmtree(other, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true", help="print the artifacts' directory; build nothing")
    args = parser.parse_args(argv)
    try:
        build = Build()
        if args.print:
            print(build.dir)
            return 0
        manifest = build.build()
    except BuildError as exc:
        print(f"xenlab build: FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
