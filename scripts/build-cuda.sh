#!/usr/bin/env bash
# Build csplade with the `cuda` feature for an NVIDIA GPU (default: compute
# capability 9.0, H100) on a machine that has no GPU and no CUDA toolkit.
#
#   scripts/build-cuda.sh            # → target/cuda/csplade and csplade.xz
#
# The CUDA 13.0 compiler and libraries come from NVIDIA's pip wheels in a
# private virtual environment (nvvm and crt pinned: newer ones emit PTX that
# the 13.0 ptxas rejects). candle links cuBLAS, cuRAND, NVRTC, the runtime and
# the driver at link time: the wheels ship versioned names only, so unversioned
# links are added, and the driver library is a stub with every cu* symbol of
# cuda.h (the real libcuda.so.1 is used at run time on the GPU machine).
#
# Run the binary there with the CUDA 13 libraries on the library path, e.g.
#   LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib ./csplade … --device cuda
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
venv="${CSPLADE_CUDA_VENV:-$root/target/cuda-toolchain/venv}"
stub="$root/target/cuda-toolchain/stub"
cap="${CUDA_COMPUTE_CAP:-90}"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check \
  'nvidia-cuda-nvcc==13.0.88' 'nvidia-nvvm==13.0.88' 'nvidia-cuda-crt==13.0.88' \
  'nvidia-cuda-runtime==13.0.96' 'nvidia-cuda-nvrtc==13.0.*' 'nvidia-cublas==13.0.*' \
  'nvidia-curand' 'nvidia-cuda-cccl==13.0.*'
cu="$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
[ -x "$cu/bin/nvcc" ] || { echo "nvcc not found under $cu/bin" >&2; exit 1; }

# Unversioned names for the linker.
for lib in cublas cublasLt cudart nvrtc curand; do
  if [ ! -e "$cu/lib/lib$lib.so" ]; then
    versioned="$(ls "$cu/lib/lib$lib.so."* 2>/dev/null | sort | head -n1 || true)"
    [ -n "$versioned" ] || { echo "lib$lib.so.* not found in $cu/lib" >&2; exit 1; }
    ln -sf "$(basename "$versioned")" "$cu/lib/lib$lib.so"
  fi
done

# Stub driver library: one empty function per cu* name declared in cuda.h.
mkdir -p "$stub"
if [ ! -e "$stub/libcuda.so" ]; then
  gcc -E -P "$cu/include/cuda.h" -I "$cu/include" \
    | grep -oE '\bcu[A-Za-z0-9_]+[[:space:]]*\(' | sed 's/[[:space:](]//g' | sort -u \
    | awk '{print "void " $1 "(void) {}"}' >"$stub/cuda_stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub/libcuda.so" "$stub/cuda_stub.c"
fi

export PATH="$cu/bin:$PATH"
export CUDA_ROOT="$cu" CUDA_PATH="$cu" CUDA_HOME="$cu"
export CUDA_COMPUTE_CAP="$cap"
export RUSTFLAGS="-L $stub -L $cu/lib"
cargo build --release --features cuda --target-dir target/cuda "$@"
strip -o target/cuda/csplade target/cuda/release/csplade
xz -T0 -6 -kf target/cuda/csplade
ls -l target/cuda/csplade target/cuda/csplade.xz
