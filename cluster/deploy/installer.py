"""The host side of install: unpack the pushed wheels into a fresh venv, stdlib only, no pip.

The manifest is the closed set of what the release needs (pip resolved it when the control host
built the wheels), so there is nothing to resolve here: each wheel is unpacked as the wheel
format says (purelib/platlib into site-packages, scripts into bin with the venv's python), console
scripts are written from entry_points.txt, and the bytecode compiled on the control host
(cluster.deploy.bytecode) comes along, so neither the hosts nor the agent's first start compile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cluster.units import layout

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
for name in a["wheels"]:
    with zipfile.ZipFile(os.path.join(a["wheel_dir"], name)) as wheel:
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
for dist in sorted(os.listdir(site)):
    points = os.path.join(site, dist, "entry_points.txt")
    if not (dist.endswith(".dist-info") and os.path.exists(points)):
        continue
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(points)
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


def install_args(release: str, wheels: Sequence[str], mark: str) -> dict[str, Any]:
    """INSTALL's argument: unpack ``wheels`` (names in the host's wheel directory) into release."""
    return {
        "target": str(layout.RELEASES / release),
        "wheel_dir": str(layout.WHEELS),
        "wheels": sorted(wheels),
        "mark": mark,
    }
