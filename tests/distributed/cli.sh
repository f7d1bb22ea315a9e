#!/usr/bin/env bash
# `unfold train` under mpiexec on 2 processes (Note [Data parallelism]):
#   cli.sh CASE UNFOLD MPIEXEC DIR
set -uo pipefail
case_name=$1 unfold=$2 mpiexec=$3 dir=$4
rm -rf "$dir" && mkdir -p "$dir" && cd "$dir" || exit 1
mpi=("$mpiexec" --oversubscribe --allow-run-as-root --bind-to none --timeout 240)
small=(--embed 16 --batch 16 --samples 2)
small_run=(--hidden 32 "${small[@]}")
fail() { echo "FAILED: $*"; echo "--- stdout"; cat out.txt; echo "--- stderr"; cat err.txt; exit 1; }
# Runs the rest of the line, output to out.txt and err.txt; sets status and seconds.
run() {
    local start=$SECONDS
    "$@" > out.txt 2> err.txt
    status=$?
    seconds=$((SECONDS - start))
}

case $case_name in
a_failing_rank_ends_the_job)
    # Rank 1 cannot read its text while rank 0 waits for it in the start-up check.
    run "${mpi[@]}" -n 1 "$unfold" train "${small_run[@]}" --steps 200 --epochs 20 --checkpoint a.safetensors \
        : -n 1 "$unfold" train "${small_run[@]}" --text missing.txt
    [ "$status" -ne 0 ] || fail "the job exited with 0"
    grep -q "unfold (rank 1 of 2): .*missing.txt" err.txt || fail "no error from rank 1 naming the file"
    [ "$seconds" -le 20 ] || fail "the job took $seconds s to end"
    echo "rank 1 failed at start-up: the job ended in $seconds s with status $status"
    # Rank 0 fails in the middle of training (its checkpoint cannot be written) while rank 1
    # waits for it in the next step's all-reduce.
    run "${mpi[@]}" -n 2 "$unfold" train "${small_run[@]}" --steps 40 --epochs 20 --checkpoint-every 3 \
        --checkpoint no-such-dir/b.safetensors
    [ "$status" -ne 0 ] || fail "the job exited with 0"
    grep -q "unfold (rank 0 of 2): .*no-such-dir/b.safetensors" err.txt || fail "no error from rank 0 naming the file"
    [ "$seconds" -le 20 ] || fail "the job took $seconds s to end"
    echo "rank 0 failed at step 3: the job ended in $seconds s with status $status"
    ;;
only_rank_0_prints_and_saves)
    run "${mpi[@]}" -n 2 "$unfold" train "${small_run[@]}" --steps 8 --epochs 2 \
        --checkpoint c.safetensors --log c.jsonl
    [ "$status" -eq 0 ] || fail "status $status"
    [ "$(grep -c '^unfold train: ' out.txt)" -eq 1 ] || fail "the banner is not printed once"
    grep -q '^data-parallel: 2 ranks, each trains on 8 of every batch.s 16 sequences' out.txt ||
        fail "no data-parallel line"
    [ "$(grep -c '^epoch [12]/2  train loss' out.txt)" -eq 2 ] || fail "not one line per epoch"
    [ "$(grep -c '^checkpoint saved to c.safetensors' out.txt)" -eq 1 ] || fail "not one save line"
    [ "$(grep -c '"held_out"' c.jsonl)" -eq 2 ] || fail "not one epoch record per epoch in the log"
    [ "$(grep -c '"grad_norm"' c.jsonl)" -eq 16 ] || fail "not one step record per step in the log"
    [ -s c.safetensors ] && [ -s c.best.safetensors ] || fail "checkpoints missing"
    ls | grep -q tmp && fail "a temporary file was left: $(ls)"
    "$unfold" eval --checkpoint c.best.safetensors > eval.txt 2>> err.txt || fail "eval of the best model failed"
    echo "one banner, two epoch lines, 18 log records, $(cat eval.txt)"
    ;;
different_models_are_refused)
    run "${mpi[@]}" -n 1 "$unfold" train "${small[@]}" --hidden 32 : -n 1 "$unfold" train "${small[@]}" --hidden 48
    [ "$status" -ne 0 ] || fail "the job exited with 0"
    [ "$(grep -c 'data-parallel ranks hold different models: parameter .* of rank 1 is .* of shape' err.txt)" -ge 1 ] ||
        fail "no error naming rank 1's parameter"
    grep -q "(144, 16)" err.txt && grep -q "(96, 16)" err.txt || fail "the shapes are not both named"
    [ "$seconds" -le 20 ] || fail "the job took $seconds s to end"
    echo "refused in $seconds s: $(head -1 err.txt)"
    ;;
*)
    echo "unknown case $case_name"
    exit 2
    ;;
esac
