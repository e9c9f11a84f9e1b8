#!/usr/bin/env bash
# Debian packages the project reads besides its pip requirements: opencv-doc, whose OpenCV sample
# photos the real-photo check set is composed from (python -m pipeline.realset). Both README
# commands call this. Quick when they are there; without apt (or root/sudo) it says what is
# missing and succeeds, since only the check set and its test need them.
set -u
SAMPLE=/usr/share/doc/opencv-doc/examples/data/box.png
[ -f "$SAMPLE" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-packages.sh: no apt-get here; for the real-photo check set install OpenCV's sample data" \
       "(Debian/Ubuntu package opencv-doc) and pass its examples/data folder to --opencv-data" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "system-packages.sh: not root and no sudo; run as root: apt-get install -y opencv-doc" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends opencv-doc >/dev/null \
  || { echo "system-packages.sh: apt-get install opencv-doc failed" >&2; exit 0; }
# Slim images drop /usr/share/doc through dpkg path-exclude rules (/etc/dpkg/dpkg.cfg.d).
[ -f "$SAMPLE" ] || echo "system-packages.sh: opencv-doc is installed but $SAMPLE is missing;" \
  "remove the path-exclude of /usr/share/doc in /etc/dpkg/dpkg.cfg.d and reinstall it" >&2
exit 0
