"""The Python 3.11 documentation as a site to crawl, and the pages a crawl of it must find.

Debian's ``python3.11-doc`` package puts the HTML under ``/usr/share/doc/python3.11/html``.
``reference_paths`` walks it from ``index.html`` the way a browser-like crawler walks it
over HTTP, but from the files on disk, with none of the crawlers' code: every
``<a href>`` is resolved against its page (urljoin), its fragment dropped, links to other
hosts left out, and a link is a page when the server would answer it with 200, i.e. when
its file exists. HTML files are read for more links; other files are pages without links.

usage: python benchmarks/docsite.py [DOCS_DIR]   (prints how many pages it finds)
"""

from __future__ import annotations

import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import lxml.html

__all__ = ["DEFAULT_DOCS", "START_PATH", "DocSite", "install_hint", "load_docs", "require_docs"]

DEFAULT_DOCS = Path("/usr/share/doc/python3.11/html")
#: Where every crawl of the docs starts (the crawlers' scripts start there too).
START_PATH = "/index.html"
#: Any base will do: the reference holds paths, and every link leaving it is off-site.
_ORIGIN = "http://docs.invalid"


@dataclass(frozen=True)
class DocSite:
    """The documentation folder and the paths (``/library/os.html``) a crawl must find."""

    root: Path
    paths: frozenset[str]
    total_bytes: int

    @property
    def pages(self) -> int:
        """How many pages a crawl exports: one item per page."""
        return len(self.paths)

    def urls(self, base: str) -> frozenset[str]:
        """Return the reference set as the URLs the crawlers see, served at ``base``."""
        return frozenset(base + path for path in self.paths)

    def largest(self) -> str:
        """Return the path of the biggest page, which the server check fetches."""
        return max(self.paths, key=lambda path: (self._file(path).stat().st_size, path))

    def _file(self, path: str) -> Path:
        return _file_for(self.root, urlsplit(path).path) or self.root


def install_hint(root: Path = DEFAULT_DOCS) -> str:
    """Say how to get the docs when ``root`` is missing (as ``setup_docs.sh`` says)."""
    return (
        f"{root}/index.html is missing. On Debian or Ubuntu, run as root:\n"
        "    apt-get install -y python3.11-doc\n"
        "(bash benchmarks/setup_docs.sh does it). Elsewhere, unpack Python 3.11's HTML docs\n"
        "(python-3.11.x-docs-html.tar.bz2 from python.org) and pass the folder with --site-dir."
    )


def require_docs(root: Path = DEFAULT_DOCS) -> None:
    """Exit with ``install_hint`` unless the documentation is under ``root``."""
    if not (root / START_PATH.lstrip("/")).is_file():
        raise SystemExit(install_hint(root))


def load_docs(root: Path = DEFAULT_DOCS) -> DocSite:
    """Find the pages of the documentation under ``root``; exit with a hint if it is missing."""
    require_docs(root)
    paths = reference_paths(root)
    total = sum((_file_for(root, urlsplit(p).path) or root).stat().st_size for p in paths)
    return DocSite(root, paths, total)


def reference_paths(root: Path) -> frozenset[str]:
    """Walk the site breadth-first from ``START_PATH``; return the paths answered with 200."""
    start = _ORIGIN + START_PATH
    seen, queue, found = {start}, deque([start]), set()
    while queue:
        url = queue.popleft()
        file = _file_for(root, urlsplit(url).path)
        if file is None:  # a 404: not a page, and nothing to follow
            continue
        found.add(url.removeprefix(_ORIGIN))
        if file.suffix != ".html":  # served as something else than HTML: no links read
            continue
        for href in lxml.html.fromstring(file.read_bytes()).xpath("//a/@href"):
            link = urldefrag(urljoin(url, href.strip()))[0]
            if link.startswith(_ORIGIN + "/") and link not in seen:
                seen.add(link)
                queue.append(link)
    return frozenset(found)


def _file_for(root: Path, path: str) -> Path | None:
    """Return the file a static server answers ``path`` with, or None for a 404.

    A folder's URL ending in ``/`` gets its ``index.html``; one without the slash is
    redirected to it, a case this site does not have and the reference does not model.
    """
    relative = unquote(path).lstrip("/")
    if relative.endswith("/") or not relative:
        relative += "index.html"
    file = root / relative  # urljoin removed any "..", so this is under root
    return file if file.is_file() else None


def main() -> None:
    """Print the size of the reference set."""
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DOCS
    site = load_docs(root)
    print(f"{root}: {site.pages} pages, {site.total_bytes / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
