#!/usr/bin/env bash
# Everything that needs a GPU, in one go: the CUDA tests, `bptt verify` on CUDA, the CUDA benchmarks.
#
#     bash benchmarks/gpu.sh [OUT_DIR]        # default OUT_DIR: gpu-results
#
# Run from the repository root with the project importable (installed, or PYTHONPATH=.). Each step has its
# own time limit so that one slow step cannot take the others' results with it. Writes into OUT_DIR:
# versions.txt, tests.log, verify.log and verify.json, bench.log, bench.json, bench.md (summarize.py's tables).
# VERIFY_K=SUBSTRING limits `bptt verify` to the cases whose name holds it.
set -u
out=${1:-gpu-results}
mkdir -p "$out"
py=${PYTHON:-python3}
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
    "$py" -c "import platform, numpy, torch; print(platform.python_version(), 'numpy', numpy.__version__, 'torch', \
torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name())"
    grep -m1 "model name" /proc/cpuinfo; nproc
} 2>&1 | tee "$out/versions.txt"
echo "== CUDA tests"
timeout 150 "$py" -m pytest -q -p no:cacheprovider tests/parity/test_dtypes.py tests/parity/test_module.py -k cuda 2>&1 \
    | tee "$out/tests.log" | tail -15
echo "== bptt verify --device cuda"
timeout 150 "$py" -m oracle.cli verify --device cuda ${VERIFY_K:+-k "$VERIFY_K"} -q --json "$out/verify.json" 2>&1 | tee "$out/verify.log" | tail -12
echo "== CUDA benchmarks"
timeout 230 "$py" -m pytest -q -p no:cacheprovider benchmarks -m cuda --benchmark-json="$out/bench.json" 2>&1 \
    | tee "$out/bench.log" | tail -8
"$py" benchmarks/summarize.py --json "$out/bench.json" --markdown > "$out/bench.md" 2>&1
grep -A 8 "cuda" "$out/bench.md" | head -120
