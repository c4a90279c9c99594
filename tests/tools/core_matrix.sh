#!/usr/bin/env bash
# shellcheck disable=SC2317  # (file-wide) the step functions are run through step(), which shellcheck does not follow
# The ansible-core matrix (`make core-matrix`): on every older ansible-core minor that meta/runtime.yml claims
# (requires_ansible >= 2.17) and that installs here, run
#   - the unit tests (pytest -n 2),
#   - the sanity tests whose result depends on the core (CORE_SANITY_TESTS, see the Makefile's comment),
#   - the integration smoke tests/integration/core_smoke.yml (bind, split, a 2-step rollout) against a lab of its own
#     (tests/integration/lab-core.yml; real Kong, traditional, 1 node where the kit is, else the simulator).
# The main core (.venv, ansible-core 2.19) runs all of these in `make test` already.
#
#   tests/tools/core_matrix.sh [minor ...]          # default: $CORE_MINORS or "2.17 2.18"
#
# Each core gets a virtual environment .tmp/cores/<minor> (ansible-core <minor>.* + tests/requirements-cores.txt),
# created once and re-created when the requirements change (stamp). Two streams run at once, as the machine has two
# cores: (1) the lab's start and the smoke on each core, one after the other on that one lab; (2) units, then sanity,
# core after core. Every step's output goes to .tmp/cores/logs/<step>.log and is printed when the step fails.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
read -r -a MINORS <<< "${*:-${CORE_MINORS:-2.17 2.18}}"
PYTHON=${PYTHON:-python3}
MAIN_BIN=$ROOT/.venv/bin
CORES=$ROOT/.tmp/cores
LOGS=$CORES/logs
LAB_DIR=$CORES/lab
LAB_CONFIG=tests/integration/lab-core.yml
REQS=tests/requirements-cores.txt
# The sanity tests that depend on the ansible-core version (the Makefile's core-matrix comment says why these).
CORE_SANITY_TESTS=${CORE_SANITY_TESTS:-action-plugin-docs ansible-doc compile import runtime-metadata validate-modules yamllint}
ROOT_HASH=$(printf %s "$ROOT" | md5sum | cut -c1-8)
PY_VERSION=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
REALKONG_KIT=${MIXEDRUN_REALKONG_KIT:-$ROOT/../shared/realkong}
if [ -n "${MIXEDRUN_LAB_KONG_ENGINE:-}" ]; then KONG_ENGINE=$MIXEDRUN_LAB_KONG_ENGINE
elif [ -f "$REALKONG_KIT/kong-cluster.sh" ]; then KONG_ENGINE=real
else KONG_ENGINE=simulator; fi

export ANSIBLE_COLLECTIONS_PATH=$ROOT/.tmp/collections
export PYTHONPATH=$ROOT/.tmp/collections:$ROOT
export ANSIBLE_CONFIG=$ROOT/ansible.cfg
export ANSIBLE_NOCOLOR=1
export PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$LOGS" "$(dirname "$ROOT/.tmp/collections/ansible_collections/mixedrun/kong")"
ln -sfn "$ROOT" "$ROOT/.tmp/collections/ansible_collections/mixedrun/kong"

now() { date +%s.%N; }
# step NAME COMMAND...: run COMMAND with its output in $LOGS/NAME.log; print the time taken, and the log on failure.
step() {
    local name=$1 start rc=0
    shift
    start=$(now)
    "$@" > "$LOGS/$name.log" 2>&1 || rc=$?
    local took
    took=$(printf '%.0f' "$(echo "$(now) - $start" | bc)")
    if [ "$rc" -eq 0 ]; then
        echo "core-matrix: $name passed (${took}s)"
    else
        echo "core-matrix: $name FAILED (${took}s, exit $rc); the last lines of $LOGS/$name.log:"
        tail -n 60 "$LOGS/$name.log" | sed 's/^/    /'
    fi
    return "$rc"
}

venv() {  # the virtual environment of core $1, (re)created when its stamp (minor + requirements) changed
    local minor=$1 dir=$CORES/$1 stamp
    stamp="ansible-core==$minor.* $(sha256sum "$REQS" | cut -c1-16) python $PY_VERSION"
    if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$stamp" ]; then return 0; fi
    echo "core-matrix: creating $dir (ansible-core $minor.*)"
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install -q "ansible-core==$minor.*" -r "$REQS" 2>&1 | { grep -v "^WARNING: Location" || true; }
    printf '%s\n' "$stamp" > "$dir/.stamp"
}

units() {
    "$CORES/$1/bin/python" -m pytest -p no:cacheprovider -q -rs -n 2 tests/unit
}

sanity() {
    local minor=$1 bin=$CORES/$1/bin copy pipver args=()
    copy=/tmp/mixedrun-kong-$ROOT_HASH-core-$minor/ansible_collections/mixedrun/kong
    # A fresh copy of the collection, but ansible-test's own delegation environment (tests/output) is kept: creating
    # it again costs half a minute per run.
    mkdir -p "$copy"
    find "$copy" -mindepth 1 -maxdepth 1 ! -name tests -exec rm -rf {} +
    if [ -d "$copy/tests" ]; then find "$copy/tests" -mindepth 1 -maxdepth 1 ! -name output -exec rm -rf {} +; fi
    tar -C "$ROOT" --exclude=./.git --exclude=./.venv --exclude=./.tmp --exclude=./.lab --exclude=__pycache__ \
        --exclude=.pytest_cache --exclude=./reports --exclude=./tests/output -cf - . | tar -C "$copy" -xf -
    # Offline: ansible-test bootstraps pip with get_pip_<its pip version>.py from its cache; each core pins its own
    # pip (2.17: 23.1.2, 2.18 and 2.19: 24.2).
    pipver=$(grep -oP "pip='\K[0-9.]+" "$bin"/../lib/python*/site-packages/ansible_test/_internal/python_requirements.py | head -1)
    mkdir -p "$HOME/.ansible/test/cache"
    cp tests/tools/get_pip.py "$HOME/.ansible/test/cache/get_pip_${pipver//./_}.py"
    for test in $CORE_SANITY_TESTS; do args+=(--test "$test"); done
    (cd "$copy" && "$bin/ansible-test" sanity --venv --python "$PY_VERSION" --color no "${args[@]}")
}

lab_up() {
    lab_down                                   # a lab an interrupted run left behind
    rm -rf "$LAB_DIR"
    mkdir -p "$LAB_DIR"
    MIXEDRUN_LAB_DIR=$LAB_DIR "$MAIN_BIN/python" -m tests.lab up --config "$LAB_CONFIG" --kong-engine "$KONG_ENGINE" \
        --kong-mode traditional --kong-nodes 1 > "$LAB_DIR/up.json"
}

lab_down() {
    if [ -d "$LAB_DIR" ]; then
        MIXEDRUN_LAB_DIR=$LAB_DIR "$MAIN_BIN/python" -m tests.lab down > /dev/null 2>&1 || true
    fi
}

smoke() {
    rm -rf "$CORES/reports-$1"
    MIXEDRUN_LAB_DIR=$LAB_DIR MIXEDRUN_REPORT_DIR=$CORES/reports-$1 \
        "$CORES/$1/bin/ansible-playbook" -i inventories/lab tests/integration/core_smoke.yml
}

stream_smoke() {
    local rc=0 minor
    step "lab-up-$KONG_ENGINE" lab_up || return 1
    for minor in "${MINORS[@]}"; do step "smoke-$minor" smoke "$minor" || rc=1; done
    return "$rc"
}

stream_static() {
    local rc=0 minor
    for minor in "${MINORS[@]}"; do step "units-$minor" units "$minor" || rc=1; done
    for minor in "${MINORS[@]}"; do step "sanity-$minor" sanity "$minor" || rc=1; done
    return "$rc"
}

start=$(now)
for minor in "${MINORS[@]}"; do venv "$minor"; done
echo "core-matrix: ansible-core $(for m in "${MINORS[@]}"; do "$CORES/$m/bin/python" -c \
    'import ansible.release as r; print(r.__version__)'; done | paste -sd ' '), Python $PY_VERSION, Kong $KONG_ENGINE" \
    "(traditional, 1 node), sanity tests: $CORE_SANITY_TESTS"

trap lab_down EXIT
stream_smoke & smoke_pid=$!
stream_static & static_pid=$!
rc=0
wait "$static_pid" || rc=1
wait "$smoke_pid" || rc=1
lab_down
trap - EXIT
took=$(printf '%.0f' "$(echo "$(now) - $start" | bc)")
if [ "$rc" -eq 0 ]; then
    echo "core-matrix: ansible-core ${MINORS[*]}: units, sanity and the smoke passed (${took}s)"
else
    echo "core-matrix: FAILED on ansible-core ${MINORS[*]} (${took}s; logs in $LOGS)"
fi
exit "$rc"
