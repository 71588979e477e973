#!/usr/bin/env bash
# Downloads, here (where PyPI is reachable), the wheels that benchmarks/gpu_check.sh needs on a
# lent GPU machine whose image lacks them (its Python is 3.12; torch, lightning, numpy, scipy,
# matplotlib, yaml and tqdm are there): into .whl/, ignored by git, to carry along.
#   bash benchmarks/gpu_wheels.sh && run: carry [".whl"], command "bash benchmarks/gpu_check.sh"
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PYTHON=${PYTHON:-python3}
rm -rf .whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux1_x86_64 any; do platforms+=(--platform "$p"); done
# the versions of this project's .venv (make install), where they were tested
for spec in jsonargparse==4.53.0 docstring_parser==0.18.0 typeshed_client==2.15.0 \
            omegaconf==2.3.1 nnAudio==0.3.4 mir_eval==0.8.2 POT==0.9.7.post1 decorator==5.2.1; do
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${platforms[@]}" -d .whl "$spec"
done
# omegaconf's parser runtime has no wheel on PyPI: build one (pure Python) here
"$PYTHON" -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
ls -la .whl
