# Shared by the round scripts (bench_round2.sh, bench_round3.sh): sourced, not run.
#
#   bench_setup ROUND RUN   sets here, data ($BRATSX_DATA, default ../shared/data beside the repository), date,
#                           work ($BRATSX_<ROUND>_WORK or a fresh folder), results, an empty workspace
#                           (BRATSX_HOME), and checkpoint: RUN's best checkpoint (else its last, or RUN itself when a
#                           file) copied once into the work folder, so a run still training does not change under
#                           the benchmark
#   link_cases DIR ROOT CASE...   a folder of links to the named cases
#   bench_table ROUND NAME ARGS...  one `bratsx bench` run into results/ROUND_NAME-DATE.json, the load beside it

bench_setup() {
    local round=$1 run=$2 override
    here=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
    data=${BRATSX_DATA:-$here/../../shared/data}
    date=$(date +%F)
    override="BRATSX_${round^^}_WORK"
    work=${!override:-$(mktemp -d "${TMPDIR:-/tmp}/bratsx-$round.XXXXXX")}
    results="$here/results"
    mkdir -p "$work" "$results"
    export BRATSX_HOME="$work/workspace"  # an empty workspace: no default model, and the export changes no other
    checkpoint="$work/model.pt"
    if [ ! -f "$checkpoint" ]; then
        local source=$run
        if [ -d "$run" ]; then
            source=$([ -f "$run/checkpoints/best.pt" ] && echo "$run/checkpoints/best.pt" || echo "$run/checkpoints/last.pt")
        fi
        cp "$source" "$checkpoint"
    fi
}

link_cases() {
    local dir=$1 root=$2
    shift 2
    mkdir -p "$dir"
    for case in "$@"; do
        [ -e "$dir/$case" ] || ln -s "$(cd "$root/$case" && pwd)" "$dir/$case"
    done
}

bench_table() {
    local round=$1 name=$2
    shift 2
    echo "== $round $name: $(uptime)"
    bratsx bench --json "$results/${round}_$name-$date.json" "$@"
    echo "== $round $name done: $(uptime)"
}
