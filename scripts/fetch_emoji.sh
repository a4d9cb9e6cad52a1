#!/usr/bin/env bash
# Fetch the emoji artwork for the clipart domain (`make clipart`, run by `make demo`; never by tests).
# Idempotent: a style whose $DEST/<vendor>/emoji.json exists is skipped (the folder only appears
# once fully unpacked); delete the folder to fetch it again.
# `npm pack` downloads each package's tarball into a cache folder (no node_modules, no install
# scripts); only `emoji.json` and the 64 px PNGs of the package's own vendor are unpacked:
#   $DEST/<vendor>/emoji.json, $DEST/<vendor>/img/<vendor>/64/*.png
# Artwork licences: Google Noto emoji Apache-2.0, Twemoji CC-BY-4.0 (see the README's data table).
set -euo pipefail
DEST=${1:-${MLL_CACHE:-.cache}/emoji}
VERSION=${EMOJI_DATASOURCE_VERSION:-16.0.0}
mkdir -p "$DEST/tarballs"
for vendor in google twitter; do
    pkg="emoji-datasource-$vendor@$VERSION"
    if [[ -f $DEST/$vendor/emoji.json ]]; then
        echo "$pkg: already in $DEST/$vendor"
        continue
    fi
    if ! command -v npm >/dev/null; then
        echo "fetch_emoji: npm not found; install Node.js and npm (e.g. apt-get install npm), then run make clipart" >&2
        exit 1
    fi
    tgz="$DEST/tarballs/emoji-datasource-$vendor-$VERSION.tgz"
    if [[ ! -f $tgz ]]; then
        (cd "$DEST/tarballs" && npm pack --silent "$pkg" >/dev/null)
    fi
    out="$DEST/$vendor"
    rm -rf "$out.partial"
    mkdir -p "$out.partial"
    tar -xzf "$tgz" -C "$out.partial" --strip-components=1 \
        --wildcards package/emoji.json "package/img/$vendor/64/*.png"
    rm -rf "$out"
    mv "$out.partial" "$out"  # a half-unpacked folder is never picked up
    echo "$pkg: $(find "$out/img/$vendor/64" -name '*.png' | wc -l) PNGs in $out"
done
