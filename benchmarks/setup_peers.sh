#!/usr/bin/env bash
# Create the peer crawlers' virtualenvs that benchmarks/run.py looks for:
#   benchmarks/.venvs/scrapy   (Scrapy)
#   benchmarks/.venvs/crawlee  (Crawlee for Python with its Parsel crawler)
#   benchmarks/.venvs/crawlee-browser  (Crawlee with its PlaywrightCrawler: browser.py)
# They live apart from fw's environment so their dependencies cannot change what fw runs on.
# Then setup_docs.sh installs the Python docs that `run.py --site pydocs` crawls.
# usage: bash benchmarks/setup_peers.sh   (PYTHON=python3.12 to pick the interpreter)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
venvs="$here/.venvs"

make_venv() {  # NAME REQUIREMENT...
    local name="$1"; shift
    echo "== $name: $*"
    "$python" -m venv "$venvs/$name"
    "$venvs/$name/bin/pip" install --quiet --upgrade pip
    "$venvs/$name/bin/pip" install --quiet "$@"
}

make_venv scrapy scrapy
# ParselCrawler needs the `parsel` extra; uvloop is not used, so peers run on the same loop as fw.
make_venv crawlee 'crawlee[parsel]'
# PlaywrightCrawler; browser.py runs it on the system's Chromium, as fw's browser plugin.
make_venv crawlee-browser 'crawlee[playwright]'

"$venvs/scrapy/bin/scrapy" version
"$venvs/crawlee/bin/python" -c 'import crawlee; print("crawlee", crawlee.__version__)'

bash "$here/setup_docs.sh"
