#!/usr/bin/env bash
# Set up a CUDA toolkit from NVIDIA's PyPI wheels, so that `cargo build --features cuda` works on a
# machine with no GPU, no NVIDIA driver and no system CUDA (see README, "Building for an NVIDIA GPU").
#
#   scripts/cuda-toolchain.sh [PREFIX]        # PREFIX defaults to $CANDOR_CUDA_PREFIX,
#                                             # then ~/.cache/candor-cuda
#   . PREFIX/env.sh                           # what the script prints, also written there
#   cargo build --release -p candor --features cuda
#
# Environment knobs (all optional):
#   CANDOR_CUDA_TOOLKIT     NVIDIA's `cuda-toolkit` metapackage version that pins the wheel set
#                           (default 13.0.3.0 = CUDA 13.0 Update 3; see "Which CUDA" in the README).
#   CANDOR_CUDA_COMPONENTS  `full` (default): compiler, headers and the libraries needed to link
#                           (cudart, cublas, cublasLt, curand, nvrtc) plus a link-time libcuda stub.
#                           `build`: compiler and headers only (~0.3 GB instead of ~1.2 GB) -- enough
#                           for `cargo check`, which compiles the kernels but links nothing.
#   CUDA_COMPUTE_CAP        GPU architecture the kernels are compiled for (default 90: H100/H200).
#   CUDARC_CUDA_VERSION     CUDA API version cudarc binds to (default 13000, which every 13.x
#                           driver and library provides).
#   CUDAFORGE_THREADS       parallel nvcc jobs for candle's kernels (default: every core; the build
#                           script's own default is half of them).
#   PIP                     pip command to use (default: python3 -m pip).
#
# Idempotent: a prefix that is already complete for the same toolkit and components is reused
# without touching the network; a different request rebuilds it in place. Wheels land only in PREFIX
# (and pip's own cache), never in the repository.
set -euo pipefail

prefix=${1:-${CANDOR_CUDA_PREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/candor-cuda}}
toolkit=${CANDOR_CUDA_TOOLKIT:-13.0.3.0}
components=${CANDOR_CUDA_COMPONENTS:-full}
compute_cap=${CUDA_COMPUTE_CAP:-90}
cudarc_version=${CUDARC_CUDA_VERSION:-13000}
nvcc_jobs=${CUDAFORGE_THREADS:-$(nproc 2>/dev/null || echo 2)}
read -r -a pip <<<"${PIP:-python3 -m pip}"

case $toolkit in
  13.*) ;;
  *) echo "cuda-toolchain: CANDOR_CUDA_TOOLKIT=$toolkit: only CUDA 13.x wheels are supported" >&2; exit 2 ;;
esac
case $components in
  build) extras="nvcc,cccl" ;;                         # nvcc pulls in crt, nvvm and cudart
  full) extras="nvcc,cccl,cudart,cublas,curand,nvrtc" ;;
  *) echo "cuda-toolchain: CANDOR_CUDA_COMPONENTS must be 'build' or 'full', not '$components'" >&2; exit 2 ;;
esac
# `full` is a superset of `build`: an existing full prefix satisfies a request for `build`.
stamp="cuda-toolkit[$extras]==$toolkit"
full_stamp="cuda-toolkit[nvcc,cccl,cudart,cublas,curand,nvrtc]==$toolkit"

mkdir -p "$(dirname "$prefix")"
prefix=$(cd "$(dirname "$prefix")" && pwd)/$(basename "$prefix")

have=$(cat "$prefix/.candor-cuda-stamp" 2>/dev/null || true)
if [[ $have != "$stamp" && $have != "$full_stamp" ]]; then
  echo "cuda-toolchain: installing $stamp into $prefix" >&2
  tmp="$prefix.tmp.$$"
  rm -rf "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp"
  # One pip run into an empty directory: every wheel unpacks into the same nvidia/cu13/ tree.
  "${pip[@]}" install --quiet --disable-pip-version-check --no-warn-script-location --root-user-action=ignore \
    --target "$tmp/site" "$stamp" >&2

  cu="$tmp/site/nvidia/cu13"
  [[ -x $cu/bin/nvcc ]] || { echo "cuda-toolchain: no nvcc in the wheels ($cu/bin)" >&2; exit 1; }
  # The prefix: the layout of /usr/local/cuda, assembled from relative symlinks into site/.
  ln -s site/nvidia/cu13/bin "$tmp/bin"
  ln -s site/nvidia/cu13/include "$tmp/include"
  ln -s site/nvidia/cu13/nvvm "$tmp/nvvm"
  mkdir -p "$tmp/lib64/stubs"
  ln -s lib64 "$tmp/lib"
  for f in "$cu"/lib/*; do
    ln -s "../site/nvidia/cu13/lib/$(basename "$f")" "$tmp/lib64/$(basename "$f")"
  done
  # The wheels ship only versioned sonames (libcublas.so.13); the linker looks for libcublas.so.
  for so in "$tmp"/lib64/lib*.so.*; do
    base=$(basename "$so")
    case $base in *builtins*|*.alt.*) continue ;; esac
    unversioned="$tmp/lib64/${base%%.so.*}.so"
    [[ -e $unversioned ]] || ln -s "$base" "$unversioned"
  done

  if [[ $components == full ]]; then
    # libcuda.so belongs to the NVIDIA driver, which is not on PyPI and not on this machine. cudarc
    # (as candle enables it: `dynamic-linking`) links against it, so the linker needs a stand-in that
    # exports the driver API. The wheels carry no stubs/ directory, so build one from cuda.h: every
    # cu* function, returning CUDA_ERROR_STUB_LIBRARY. Its soname is libcuda.so.1, so the binary asks
    # for the driver's real libcuda.so.1 at run time. It sits only in lib64/stubs, a link-time path.
    # (cuProfiler* are driver functions too, declared in cudaProfiler.h, which no wheel ships.)
    { gcc -E -P -I"$cu/include" "$cu/include/cuda.h"
      printf '%s(\n' cuProfilerInitialize cuProfilerStart cuProfilerStop; } \
      | grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | tr -d '( \t' | sort -u \
      | awk 'BEGIN { print "/* Link-time stub for libcuda.so.1; generated by scripts/cuda-toolchain.sh */" }
             { printf "int %s(void) { return 34; /* CUDA_ERROR_STUB_LIBRARY */ }\n", $1 }' \
      >"$tmp/lib64/stubs/libcuda-stub.c"
    gcc -shared -fPIC -O0 -w -Wl,-soname,libcuda.so.1 \
      -o "$tmp/lib64/stubs/libcuda.so" "$tmp/lib64/stubs/libcuda-stub.c"
  fi
  echo "$stamp" >"$tmp/.candor-cuda-stamp"

  rm -rf "$prefix"
  mv "$tmp" "$prefix"
  trap - EXIT
fi

cat >"$prefix/env.sh" <<EOF
# Generated by scripts/cuda-toolchain.sh ($(cat "$prefix/.candor-cuda-stamp")). Source it before
# \`cargo build --features cuda\`.
export CUDA_ROOT="$prefix"
export CUDA_PATH="$prefix"
export CUDA_HOME="$prefix"
export PATH="$prefix/bin:\$PATH"
export CUDA_COMPUTE_CAP="$compute_cap"
export CUDARC_CUDA_VERSION="$cudarc_version"
export CUDAFORGE_THREADS="$nvcc_jobs"
EOF
cat "$prefix/env.sh"
