#!/usr/bin/env bash
# Build the Lambda layer with the native runtime of ompf: onnxruntime-node and sharp, pruned to the
# Linux CPU binaries of ONE architecture. The npm packages as installed hold every platform
# (onnxruntime-node alone is 288 MB, over Lambda's 250 MB unzipped limit for a function and all its
# layers); the pruned layer is about 66 MB for x86_64 (see layers/README.md).
#
#   layers/build-native-layer.sh OUT_DIR [x86_64|arm64]
#
# The layer's content lands in OUT_DIR/nodejs/node_modules (Lambda puts /opt/nodejs/node_modules on
# the module path). The CDK stack runs this script at synth (local bundling, no Docker). Packages of
# the host's architecture come from node_modules; sharp's packages for another architecture are
# fetched with `npm pack` (the npm registry, same versions as sharp's optionalDependencies).
set -euo pipefail

OUT=${1:?usage: build-native-layer.sh OUT_DIR [x86_64|arm64]}
ARCH=${2:-x86_64}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NM_SRC=$ROOT/node_modules

case $ARCH in
  x86_64) NODE_ARCH=x64 ;;
  arm64) NODE_ARCH=arm64 ;;
  *) echo "build-native-layer: unknown architecture '$ARCH' (x86_64 or arm64)" >&2; exit 2 ;;
esac

NM=$OUT/nodejs/node_modules
rm -rf "$OUT/nodejs"
mkdir -p "$NM"

copy_pkg() { # copy_pkg NAME: a whole (small, pure JS) package
  [[ -d $NM_SRC/$1 ]] || { echo "build-native-layer: $1 is not installed (npm ci first)" >&2; exit 1; }
  mkdir -p "$NM/$(dirname "$1")"
  cp -R "$NM_SRC/$1" "$NM/$1"
}

# onnxruntime-node: package.json, the JS, and bin/napi-v6/linux/<arch> only (no Windows/macOS, no CUDA).
ORT=$NM_SRC/onnxruntime-node
[[ -f $ORT/bin/napi-v6/linux/$NODE_ARCH/onnxruntime_binding.node ]] ||
  { echo "build-native-layer: onnxruntime-node has no linux/$NODE_ARCH binary" >&2; exit 1; }
mkdir -p "$NM/onnxruntime-node/bin/napi-v6/linux"
cp "$ORT/package.json" "$NM/onnxruntime-node/"
cp -R "$ORT/dist" "$NM/onnxruntime-node/dist"
cp -R "$ORT/bin/napi-v6/linux/$NODE_ARCH" "$NM/onnxruntime-node/bin/napi-v6/linux/$NODE_ARCH"
copy_pkg onnxruntime-common
rm -rf "$NM/onnxruntime-common/dist/esm" # CommonJS is what Lambda's require() loads

# sharp and its JavaScript dependencies, then its prebuilt binaries for linux-<arch> (glibc).
for pkg in sharp detect-libc semver @img/colour; do copy_pkg "$pkg"; done
rm -rf "$NM/sharp/src" "$NM/sharp/install"
SHARP_VERSION=$(node -p "require('$NM_SRC/sharp/package.json').version")
VIPS_VERSION=$(node -p "require('$NM_SRC/sharp/package.json').optionalDependencies['@img/sharp-libvips-linux-$NODE_ARCH']")
for pkg in "@img/sharp-linux-$NODE_ARCH@$SHARP_VERSION" "@img/sharp-libvips-linux-$NODE_ARCH@$VIPS_VERSION"; do
  name=${pkg%@*}
  if [[ -d $NM_SRC/$name ]] && [[ $(node -p "require('$NM_SRC/$name/package.json').version") == "${pkg##*@}" ]]; then
    copy_pkg "$name"
  else
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$pkg" >/dev/null && mkdir -p "$NM/$name" && tar -xzf ./*.tgz -C "$NM/$name" --strip-components=1)
    rm -rf "$tmp"
  fi
done

# Nothing Lambda needs: source maps, type declarations, docs.
find "$NM" \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.md' \) -type f -delete

echo "build-native-layer: $ARCH layer, $(du -sb "$OUT/nodejs" | cut -f1) bytes unzipped, in $OUT" >&2
