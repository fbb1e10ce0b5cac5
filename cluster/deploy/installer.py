"""The host side of install: put the pushed wheels into a fresh venv, stdlib only, no pip.

The manifest is the closed set of what the release needs (pip resolved it when the control host
built the wheels), so there is nothing to resolve here. A wheel hosts import in place
(cluster.deploy.zipsafe) is hard-linked into ``<release>/wheels/`` (the pushed file is only ever
replaced by a rename, so the link keeps this release's bytes) and named in a ``.pth`` file of
site-packages; every other wheel is unpacked as the wheel format says (purelib/platlib into
site-packages, scripts into bin with the venv's python). Console scripts are written from the
entry_points.txt of both kinds, and the bytecode compiled on the control host
(cluster.deploy.bytecode) comes along, so neither the hosts nor the agent's first start compile.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from cluster.units import layout

PTH = "claude-cluster-wheels.pth"

# python3 -c INSTALL JSON: Python 3.6+, stdlib only (it runs before any release exists).
INSTALL = r"""
import configparser, json, os, shutil, subprocess, sys, zipfile
a = json.loads(sys.argv[1])
os.umask(0o022)
root = a["target"]
venv = root + "/venv"
py = venv + "/bin/python"
shutil.rmtree(root, ignore_errors=True)
subprocess.check_call([sys.executable, "-m", "venv", "--without-pip", venv])
site = "%s/lib/python%d.%d/site-packages" % (venv, sys.version_info[0], sys.version_info[1])
where = {"purelib": site, "platlib": site, "scripts": venv + "/bin"}
points, archives = [], []
for name in a["wheels"]:
    source = os.path.join(a["wheel_dir"], name)
    if name in a["in_place"]:
        os.makedirs(root + "/wheels", exist_ok=True)
        archive = os.path.join(root, "wheels", name)
        try:
            os.link(source, archive)
        except OSError:
            shutil.copyfile(source, archive)
        archives.append(archive)
        with zipfile.ZipFile(archive) as wheel:
            points += [wheel.read(n).decode() for n in wheel.namelist()
                       if n.count("/") == 1 and n.endswith(".dist-info/entry_points.txt")]
        continue
    with zipfile.ZipFile(source) as wheel:
        for info in wheel.infolist():
            parts = info.filename.split("/")
            if info.filename.endswith("/"):
                continue
            dest = site
            if parts[0].endswith(".data") and len(parts) > 2:
                dest, parts = where.get(parts[1]), parts[2:]
                if dest is None:
                    continue  # headers and data files: the agent uses neither
            path = os.path.join(dest, *parts)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            data = wheel.read(info)
            if dest == where["scripts"] and data.startswith(b"#!python"):
                data = b"#!" + py.encode() + data[len(b"#!python"):]
            with open(path, "wb") as out:
                out.write(data)
            if dest == where["scripts"] or (info.external_attr >> 16) & 0o111:
                os.chmod(path, 0o755)
            if dest == site and parts[-1] == "entry_points.txt" and len(parts) == 2 \
                    and parts[0].endswith(".dist-info"):
                points.append(data.decode())
with open(os.path.join(site, a["pth"]), "w") as out:
    out.write("".join(path + "\n" for path in archives))
for text in points:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read_string(text)
    if not parser.has_section("console_scripts"):
        continue
    for script, target in parser.items("console_scripts"):
        module, _, attr = target.partition(":")
        attr = attr.split("[")[0].strip()
        body = ("#!%s\nimport sys\nfrom %s import %s\nif __name__ == '__main__':\n"
                "    sys.exit(%s())\n") % (py, module.strip(), attr.split(".")[0], attr)
        path = os.path.join(venv, "bin", script)
        with open(path, "w") as out:
            out.write(body)
        os.chmod(path, 0o755)
open(os.path.join(root, a["mark"]), "w").close()
"""


def install_args(
    release: str, wheels: Sequence[str], mark: str, in_place: Collection[str] = ()
) -> dict[str, Any]:
    """INSTALL's argument: put ``wheels`` (names in the host's wheel directory) into release,
    importing those in ``in_place`` as archives."""
    return {
        "target": str(layout.RELEASES / release),
        "wheel_dir": str(layout.WHEELS),
        "wheels": sorted(wheels),
        "in_place": sorted(set(in_place) & set(wheels)),
        "pth": PTH,
        "mark": mark,
    }
