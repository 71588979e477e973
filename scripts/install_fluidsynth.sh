#!/usr/bin/env bash
# Installs the renderer of the real-instrument test set (real_data.py): the Debian/Ubuntu
# packages fluidsynth (MIDI -> WAV) and fluid-soundfont-gm (/usr/share/sounds/sf2/FluidR3_GM.sf2).
# Needs apt-get and root (or password-less sudo). Exits non-zero, with one line on stderr,
# when it cannot install them.
set -euo pipefail

packages=(fluidsynth fluid-soundfont-gm)

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_fluidsynth.sh: apt-get not found; install ${packages[*]} with your package manager" >&2
    exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
    run=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    run=(sudo -n)
else
    echo "install_fluidsynth.sh: needs root: run 'sudo apt-get install ${packages[*]}'" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if ! "${run[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null 2>&1; then
    "${run[@]}" apt-get update -q >/dev/null 2>&1 || true
    if ! "${run[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null; then
        echo "install_fluidsynth.sh: apt-get could not install ${packages[*]}" >&2
        exit 1
    fi
fi
