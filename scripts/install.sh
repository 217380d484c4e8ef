#!/usr/bin/env bash
# The one install procedure: `make install`, `make install-test` (so CI's `make test`) and the
# container image's build stage all run this script, so CI proves the image's install steps.
#
#   scripts/install.sh runtime   virtualenv, llama.cpp (portable build, wheel cached), sovhub
#   scripts/install.sh test      the same plus the test tools ('.[test]')
#
# Environment (all optional):
#   PYTHON        interpreter that creates the virtualenv            [python3]
#   VENV          the virtualenv                                     [.venv]
#   WHEELS        where the compiled llama.cpp wheel is kept          [~/.cache/sovhub/wheels]
#   LLAMA_CMAKE   CMake flags of the llama.cpp build                  [portable x86-64, below]
#   SOVHUB_EDITABLE  1: install sovhub editable (development), 0: a normal install (image)   [1]
# Stamps $VENV/.llama, $VENV/.installed and $VENV/.installed-test as make's targets expect.
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-runtime}"
case "$what" in
  runtime|test) ;;
  -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
  *) echo "usage: scripts/install.sh [runtime|test]" >&2; exit 2 ;;
esac

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
BIN="$VENV/bin"
WHEELS="${WHEELS:-$HOME/.cache/sovhub/wheels}"
SOVHUB_EDITABLE="${SOVHUB_EDITABLE:-1}"
# The version is pinned once, in pyproject.toml.
LLAMA_VERSION="$(sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml | head -n1)"
[ -n "$LLAMA_VERSION" ] || { echo "install.sh: no llama-cpp-python==X pin in pyproject.toml" >&2; exit 1; }
# Portable x86-64 build (AVX2/FMA): a native build may use AMX/AVX-512 paths that some
# virtualised CPUs advertise but do not allow, which kills the process with SIGILL.
LLAMA_CMAKE="${LLAMA_CMAKE:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF}"

if [ ! -x "$BIN/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$BIN/pip" install -q --upgrade pip wheel
fi

if [ ! -f "$VENV/.llama" ]; then
  mkdir -p "$WHEELS"
  if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
    echo ">>> compiling llama.cpp (llama-cpp-python $LLAMA_VERSION) once: about 3-5 minutes on 2 cores"
    CMAKE_ARGS="$LLAMA_CMAKE" "$BIN/pip" wheel --no-deps --no-binary llama-cpp-python --no-cache-dir \
      "llama-cpp-python==$LLAMA_VERSION" -w "$WHEELS"
  fi
  "$BIN/pip" install -q --no-deps --force-reinstall "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
  "$BIN/pip" install -q 'numpy>=1.26' 'typing-extensions>=4.5' 'diskcache>=5.6' 'jinja2>=2.11'
  touch "$VENV/.llama"
fi

target="."
[ "$what" = test ] && target=".[test]"
if [ "$SOVHUB_EDITABLE" = 1 ]; then
  "$BIN/pip" install -q -e "$target"
else
  "$BIN/pip" install -q --no-cache-dir "$target"
fi
touch "$VENV/.installed"
[ "$what" = test ] && touch "$VENV/.installed-test"
exit 0
