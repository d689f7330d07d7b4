#!/usr/bin/env bash
# Install the site `run.py --site pydocs` crawls: the Python 3.11 docs from Debian's
# python3.11-doc package, in /usr/share/doc/python3.11/html. As root with apt-get it
# installs the package; otherwise it says what to run.
# usage: bash benchmarks/setup_docs.sh   (setup_peers.sh runs it too)
set -euo pipefail

docs=/usr/share/doc/python3.11/html
if [ -f "$docs/index.html" ]; then
    echo "== python3.11-doc: $docs is there"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== python3.11-doc: apt-get install -y python3.11-doc"
    apt-get install -y python3.11-doc || { apt-get update && apt-get install -y python3.11-doc; }
else
    echo "== python3.11-doc: not installed. On Debian or Ubuntu, run as root:"
    echo "     apt-get install -y python3.11-doc"
    echo "   elsewhere, unpack Python 3.11's HTML docs (python-3.11.x-docs-html.tar.bz2 from"
    echo "   python.org) and pass the folder: python benchmarks/run.py --site pydocs --site-dir DIR"
fi
