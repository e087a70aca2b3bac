"""Fetch the JavaScript the rendered book serves itself (chapter 8, "Interactive lab"; preface).

Usage: ``python tools/web_assets.py OUTDIR`` (``make web-assets`` passes ``book/_widgets/vendor``).

The static HTML book must work offline, so the widget manager that renders chapter 8's saved
widget state (``@jupyter-widgets/html-manager``), the AMD loader it needs (``requirejs``) and
MathJax are copied into the book from pinned npm tarballs.  Each tarball is checked against the
registry's sha512 integrity and kept in ``~/.cache/bgnet-lite/npm`` (``BGNET_NPM_CACHE``
overrides), so a second run needs no network.  OUTDIR is assembled in ``OUTDIR.part`` and renamed
into place; ``OUTDIR/.stamp`` (the pins) is written last, and a run whose stamp already matches
does nothing.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    integrity: str  # the registry's dist.integrity of the tarball
    dest: str  # folder under OUTDIR
    keep: tuple[str, ...]  # files or folders inside the tarball's package/ to copy
    strip: str = ""  # leading folder dropped from kept paths: dist/embed-amd.js -> embed-amd.js


# ipywidgets 8.1.x (controls 2.0.0 / base 2.0.0 model versions) renders with html-manager 1.0.x.
# Its embed-amd.js bundles @jupyter-widgets/base, controls and output, so the standard widgets
# never fall back to the CDN; the script tag's data-jupyter-widgets-cdn (see _config.yml) points
# any other module at a local path, so an unknown widget fails locally instead of going online.
PACKAGES = (
    NpmPackage(
        "@jupyter-widgets/html-manager",
        "1.0.15",
        "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
        "html-manager",
        # the Font Awesome files its CSS asks for, next to embed-amd.js (see _config.yml)
        ("dist/embed-amd.js", "dist/*.woff2", "dist/*.woff", "dist/*.ttf", "dist/*.eot",
         "dist/*.svg", "package.json"),
        strip="dist/",
    ),
    NpmPackage(
        "requirejs",
        "2.3.8",
        "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
        "requirejs",
        ("require.js", "package.json", "README.md"),
    ),
    # tex-chtml.js plus what it loads at run time: CHTML fonts, TeX extensions (autoload), the
    # context menu and its accessibility tools (which need the speech-rule-engine maps).
    NpmPackage(
        "mathjax",
        "3.2.2",
        "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
        "mathjax",
        (
            "es5/tex-chtml.js",
            "es5/output/chtml/fonts/woff-v2",
            "es5/input/tex/extensions",
            "es5/ui",
            "es5/a11y",
            "es5/sre",
            "LICENSE",
            "package.json",
        ),
        strip="es5/",
    ),
)

STAMP = ".stamp"


def stamp_text() -> str:
    """What OUTDIR/.stamp holds: pins and layout, so changing either triggers a rebuild."""
    pins = {package.name: asdict(package) for package in PACKAGES}
    return json.dumps(pins, indent=1, sort_keys=True) + "\n"


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "bgnet-lite" / "npm"
    return Path(os.environ.get("BGNET_NPM_CACHE", default))


def sri_sha512(path: Path) -> str:
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def tarball_name(package: NpmPackage) -> str:
    # the file name `npm pack` gives: @scope/name -> scope-name-version.tgz
    return f"{package.name.lstrip('@').replace('/', '-')}-{package.version}.tgz"


def fetch_tarball(package: NpmPackage, cache: Path) -> Path:
    """The verified tarball from the cache, fetched with `npm pack` when missing or corrupt."""
    cached = cache / tarball_name(package)
    if cached.is_file() and sri_sha512(cached) == package.integrity:
        return cached
    if shutil.which("npm") is None:
        raise SystemExit(f"web_assets: {cached} is not cached and npm is not installed; "
                         "install Node.js/npm (or copy the tarball there) and rerun")
    cache.mkdir(parents=True, exist_ok=True)
    spec = f"{package.name}@{package.version}"
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        env = dict(os.environ, npm_config_fund="false", npm_config_audit="false",
                   npm_config_update_notifier="false")
        result = subprocess.run(["npm", "pack", spec, "--silent"], cwd=tmp, env=env,
                                capture_output=True, text=True)
        fetched = Path(tmp) / tarball_name(package)
        if result.returncode != 0 or not fetched.is_file():
            raise SystemExit(f"web_assets: `npm pack {spec}` failed (is the npm registry "
                             f"reachable?):\n{result.stderr.strip()}")
        got = sri_sha512(fetched)
        if got != package.integrity:
            raise SystemExit(f"web_assets: {spec} has integrity {got}, expected "
                             f"{package.integrity}; refusing to use it")
        os.replace(fetched, cached)
    return cached


def matching(inner: str, keep: tuple[str, ...]) -> list[str]:
    """The keep entries (file, folder or glob) that select a path inside package/."""
    return [item for item in keep
            if inner == item or inner.startswith(item.rstrip("/") + "/")
            or fnmatch.fnmatchcase(inner, item)]


def wanted(member: str, keep: tuple[str, ...]) -> str | None:
    """The path under the package folder if the tarball member is one to copy, else None."""
    path = PurePosixPath(member)
    if path.parts[:1] != ("package",) or ".." in path.parts:
        return None
    inner = PurePosixPath(*path.parts[1:]).as_posix()
    return inner if matching(inner, keep) else None


def extract(package: NpmPackage, tarball: Path, dest: Path) -> int:
    """Copy the kept files of one tarball into dest; returns their total size in bytes."""
    total = 0
    found = set()
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive.getmembers():
            inner = wanted(member.name, package.keep)
            if inner is None or not member.isfile():
                continue
            target = dest / inner.removeprefix(package.strip)
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.extractfile(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            total += member.size
            found.update(matching(inner, package.keep))
    missing = set(package.keep) - found
    if missing:
        raise SystemExit(f"web_assets: {tarball} lacks {sorted(missing)}; "
                         "the pinned version's layout changed")
    return total


def build(outdir: Path) -> None:
    stamp = outdir / STAMP
    if stamp.is_file() and stamp.read_text() == stamp_text():
        print(f"web_assets: {outdir} is up to date")
        return
    cache = cache_dir()
    part = outdir.with_name(outdir.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    try:
        for package in PACKAGES:
            tarball = fetch_tarball(package, cache)
            size = extract(package, tarball, part / package.dest)
            print(f"web_assets: {package.name}@{package.version}: {size / 1e6:.1f} MB "
                  f"-> {outdir / package.dest}")
        (part / STAMP).write_text(stamp_text())  # last: marks the folder complete
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    old = outdir.with_name(outdir.name + ".old.part")
    shutil.rmtree(old, ignore_errors=True)
    if outdir.exists():
        os.replace(outdir, old)
    os.replace(part, outdir)
    shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    build(Path(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
