#!/usr/bin/env bash
# Make sure the system data and programs that wv (or its tests) use are installed.
#   tools/system_packages.sh PYTHON wordnet [browser]
# wordnet: WordNet for `wv score keywords` (NLTK's own data, or Debian's wordnet-base + wordnet-sense-index).
# browser: Chromium and chromedriver for the audit report's browser test (Debian's chromium + chromium-driver).
# Each need that is already met costs a few milliseconds; a missing one is installed with apt-get when this
# user is root or has password-less sudo, else the script stops with the one command to run.
set -u
python=$1
shift

missing=()
for need in "$@"; do
  case "$need" in
    wordnet)
      if [ -f /usr/share/wordnet/index.noun ] && [ -f /usr/share/wordnet/index.sense ]; then continue; fi
      if "$python" -c "import nltk, sys; nltk.data.find('corpora/wordnet.zip')" >/dev/null 2>&1 \
        || "$python" -c "import nltk, sys; nltk.data.find('corpora/wordnet')" >/dev/null 2>&1; then continue; fi
      missing+=(wordnet-base wordnet-sense-index) ;;
    browser)
      if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then continue; fi
      missing+=(chromium chromium-driver) ;;
    *) echo "system_packages.sh: unknown need '$need'" >&2; exit 2 ;;
  esac
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "wv needs ${missing[*]} (not a Debian/Ubuntu machine): install WordNet with \`$python -m nltk.downloader wordnet\`" \
       "and Chromium with its chromedriver through your system's package manager, then run make again." >&2
  exit 2
fi
if [ "$(id -u)" = 0 ]; then
  sudo_cmd=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
  sudo_cmd=(sudo -n)
else
  echo "wv needs the system packages ${missing[*]}: run \`sudo apt-get install -y ${missing[*]}\` (or, for WordNet alone," \
       "\`$python -m nltk.downloader wordnet\`), then run make again." >&2
  exit 2
fi

echo "Installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
install() { "${sudo_cmd[@]}" apt-get install -y -q "${missing[@]}" >/dev/null; }
if ! install 2>/dev/null; then
  # A fresh machine has no package lists yet (or stale ones): fetch them once, then try again.
  "${sudo_cmd[@]}" apt-get update -q >/dev/null && install || {
    echo "apt-get could not install ${missing[*]}; run \`sudo apt-get update && sudo apt-get install -y ${missing[*]}\` and see its message." >&2
    exit 2
  }
fi
