#!/usr/bin/env bash
# The collection as its users get it: `make package-check`.
#   1. build the tarball (ansible-galaxy collection build) and check what it holds (no local state, the files
#      Galaxy, ansible-builder and the roles need);
#   2. galaxy-importer on the tarball, the check Galaxy and Automation Hub run on upload (tests/tools/galaxy-importer.cfg:
#      ansible-doc on; ansible-test and ansible-lint off, `make sanity` and `make lint` run them): fails on any error it
#      reports, prints its warnings;
#   3. install the tarball into an empty path and use it from there (ansible-doc, roles, playbooks by FQCN);
#   4. the execution environment: `ansible-builder introspect` on the installed collection (what the builder stage
#      runs) and `ansible-builder create` for execution-environment.yml, then the context is validated. The image
#      itself is not built (that needs podman or docker with a daemon, and the base image's registry).
# Environment: IMPORTER_VENV (default .tmp/venv-importer: galaxy-importer, ansible-builder), VENV (default .venv),
# PACKAGE_CHECK_KEEP=1 keeps the work directory, PACKAGE_CHECK_LINT=1 has galaxy-importer run ansible-lint too.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV=${VENV:-$ROOT/.venv}
IMPORTER_VENV=${IMPORTER_VENV:-$ROOT/.tmp/venv-importer}
IMPORTER_CFG=$ROOT/tests/tools/galaxy-importer.cfg

for tool in "$VENV/bin/ansible-galaxy" "$IMPORTER_VENV/bin/ansible-builder" "$IMPORTER_VENV/bin/python"; do
    [ -x "$tool" ] || { echo "package-check: $tool missing (run: make package-check)" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mixedrun-kong-package.XXXXXX")
cleanup() { if [ "${PACKAGE_CHECK_KEEP:-0}" = 1 ]; then echo "package-check: work directory kept: $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT

SUMMARY=()
FAILED=0
T0=$SECONDS
step_start() { STEP_T=$SECONDS; echo "== package-check: $1"; }
step_end() { SUMMARY+=("$(printf '%-5s %-66s %4ss' "$1" "$2" "$((SECONDS - STEP_T))")"); [ "$1" = ok ] || [ "$1" = note ] || FAILED=1; }
fail() { echo "package-check: FAIL: $*" >&2; }
# Commands that must not see the checkout's collection (Makefile exports ANSIBLE_CONFIG, PYTHONPATH and
# ANSIBLE_COLLECTIONS_PATH pointing at it): run from the work directory with a clean Ansible environment.
clean_env() { (cd "$WORK" && env -u ANSIBLE_CONFIG -u PYTHONPATH -u ANSIBLE_COLLECTIONS_PATH -u ANSIBLE_COLLECTIONS_PATHS \
    ANSIBLE_LOCAL_TEMP="$WORK/ansible-tmp" ANSIBLE_NOCOLOR=1 "$@"); }

galaxy_field() { "$VENV/bin/python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))[sys.argv[2]])' "$ROOT/galaxy.yml" "$1"; }
NAMESPACE=$(galaxy_field namespace)
NAME=$(galaxy_field name)
VERSION=$(galaxy_field version)
FQCN=$NAMESPACE.$NAME
TARBALL=$WORK/dist/$NAMESPACE-$NAME-$VERSION.tar.gz

# --- 1. build -------------------------------------------------------------------------------------------------------
step_start "build $FQCN $VERSION"
ok=1
mkdir -p "$WORK/dist"
clean_env "$VENV/bin/ansible-galaxy" collection build --force --output-path "$WORK/dist" "$ROOT" || ok=0
if [ "$ok" = 1 ] && [ -f "$TARBALL" ]; then
    tar -tzf "$TARBALL" | sed 's#/$##' | sort > "$WORK/contents.txt"
    # local state, caches, tool output and earlier builds stay out (galaxy.yml build_ignore)
    leaked=$(grep -E '^(\.venv|\.tmp|\.lab|\.ci|\.git|\.cache|\.ansible|\.pytest_cache|\.mypy_cache|reports|tests/output)(/|$)|(^|/)(__pycache__|\.pytest_cache)(/|$)|\.pyc$|\.retry$|\.tar\.gz$|^tests/integration/(integration_config\.yml|inventory)$|importer_result\.json$' \
        "$WORK/contents.txt" || true)
    if [ -n "$leaked" ]; then fail "the tarball holds local state (add it to build_ignore in galaxy.yml):"; sed -n '1,20s/^/    /p' <<< "$leaked"; ok=0; fi
    required=(MANIFEST.json FILES.json README.md meta/runtime.yml meta/execution-environment.yml requirements.txt bindep.txt
              changelogs/changelog.yaml)
    for role in "$ROOT"/roles/*/; do
        role=${role%/}; role=${role#"$ROOT"/}
        required+=("$role/README.md" "$role/meta/main.yml" "$role/meta/argument_specs.yml")
    done
    # a role README a user can act on: an example play that uses the role by its FQCN
    for role in "$ROOT"/roles/*/; do
        role=$(basename "$role")
        readme=$(tar -xzOf "$TARBALL" "roles/$role/README.md" 2>/dev/null || true)
        { grep -q '^```yaml' <<< "$readme" && grep -qF "$FQCN.$role" <<< "$readme"; } \
            || { fail "roles/$role/README.md has no example play (a \`\`\`yaml block using $FQCN.$role)"; ok=0; }
    done
    for module in "$ROOT"/plugins/modules/*.py; do required+=("plugins/modules/$(basename "$module")"); done
    for f in "${required[@]}"; do
        grep -qxF "$f" "$WORK/contents.txt" || { fail "the tarball lacks $f"; ok=0; }
    done
    echo "tarball: $(basename "$TARBALL"), $(grep -vc '/$' "$WORK/contents.txt") entries, $(du -k "$TARBALL" | cut -f1) KiB"
else
    fail "ansible-galaxy collection build"; ok=0
fi
if [ "$ok" = 1 ]; then step_end ok "build: $(basename "$TARBALL"), nothing local inside"; else step_end FAIL "build"; fi

# --- 2. galaxy-importer --------------------------------------------------------------------------------------------------
if [ -f "$TARBALL" ]; then
    step_start "galaxy-importer $("$IMPORTER_VENV/bin/python" -c 'import galaxy_importer; print(galaxy_importer.__version__)') ($IMPORTER_CFG)"
    mkdir -p "$WORK/importer" "$WORK/ansible-tmp"
    rc=0
    # ansible-doc and ansible-lint are found on PATH: the importer's environment first.
    (cd "$WORK/importer" && env -u ANSIBLE_CONFIG -u PYTHONPATH -u ANSIBLE_COLLECTIONS_PATH -u ANSIBLE_COLLECTIONS_PATHS \
        PATH="$IMPORTER_VENV/bin:$PATH" GALAXY_IMPORTER_CONFIG="$IMPORTER_CFG" \
        ${PACKAGE_CHECK_LINT:+GALAXY_IMPORTER_RUN_ANSIBLE_LINT=True} GALAXY_IMPORTER_TMP_ROOT_DIR="$WORK/importer" GALAXY_IMPORTER_ANSIBLE_LOCAL_TMP="$WORK/ansible-tmp" \
        "$IMPORTER_VENV/bin/python" -m galaxy_importer.main "$TARBALL") > "$WORK/importer.log" 2>&1 || rc=$?
    # Its log: one line per message, "ERROR: ..." / "WARNING: ..." (an error may span several lines).
    errors=$(grep -cE '^(ERROR|CRITICAL):' "$WORK/importer.log" || true)
    warnings=$(grep -cE '^WARNING:' "$WORK/importer.log" || true)
    grep -E '^(WARNING|ERROR|CRITICAL):|Traceback' "$WORK/importer.log" | cut -c1-2000 | sed 's/^/    /' || true
    ok=1
    [ "$rc" = 0 ] || { fail "galaxy-importer exited $rc"; ok=0; }
    [ "$errors" = 0 ] || { fail "galaxy-importer reported $errors error(s) (above)"; ok=0; }
    grep -q '^Importer processing completed successfully' "$WORK/importer.log" || { fail "galaxy-importer did not complete"; ok=0; }
    if [ -f "$WORK/importer/importer_result.json" ]; then
        # what Galaxy would show: every module with its documentation, every role with its README and description
        "$VENV/bin/python" - "$WORK/importer/importer_result.json" "$ROOT" <<'EOF' || ok=0
import json, os, sys
result = json.load(open(sys.argv[1]))
root = sys.argv[2]
problems = []
contents = {(c["content_type"], c["content_name"]): c for c in result["docs_blob"]["contents"]}
descriptions = {(c["content_type"], c["name"]): c.get("description") for c in result["contents"]}
modules = sorted(f[:-3] for f in os.listdir(os.path.join(root, "plugins", "modules")) if f.endswith(".py") and f != "__init__.py")
roles = sorted(d for d in os.listdir(os.path.join(root, "roles")) if os.path.isdir(os.path.join(root, "roles", d)))
for m in modules:
    c = contents.get(("module", m))
    if c is None:
        problems.append("module %s: not found by the importer" % m)
    elif not (c.get("doc_strings") or {}).get("doc"):
        problems.append("module %s: no documentation (ansible-doc failed on it)" % m)
for r in roles:
    c = contents.get(("role", r))
    if c is None:
        problems.append("role %s: not found by the importer" % r)
        continue
    if not c.get("readme_html"):
        problems.append("role %s: no README" % r)
    if not descriptions.get(("role", r)):
        problems.append("role %s: no description (meta/main.yml galaxy_info.description)" % r)
if not (result["docs_blob"].get("collection_readme") or {}).get("html"):
    problems.append("collection README: empty")
for p in problems:
    print("package-check: FAIL: galaxy-importer result: " + p, file=sys.stderr)
print("importer result: %d modules documented, %d roles with README and description, requires_ansible %s"
      % (len(modules) - sum(p.startswith("module") for p in problems), len(roles) - sum(p.startswith("role") for p in problems),
         result.get("requires_ansible")))
sys.exit(1 if problems else 0)
EOF
    else
        fail "galaxy-importer wrote no result"; ok=0
    fi
    if [ "$ok" = 1 ]; then step_end ok "galaxy-importer: 0 errors, $warnings warning(s)"; else
        echo "    (full log: $WORK/importer.log)"; PACKAGE_CHECK_KEEP=1; step_end FAIL "galaxy-importer: $errors error(s), $warnings warning(s)"; fi
fi

# --- 3. the installed collection -----------------------------------------------------------------------------------------
if [ -f "$TARBALL" ]; then
    step_start "install the tarball into an empty path and use it from there"
    ok=1
    INSTALL=$WORK/install
    COLL_DIR=$INSTALL/ansible_collections/$NAMESPACE/$NAME
    clean_env "$VENV/bin/ansible-galaxy" collection install "$TARBALL" -p "$INSTALL" > "$WORK/install.log" 2>&1 \
        || { cat "$WORK/install.log"; fail "ansible-galaxy collection install"; ok=0; }
    if [ "$ok" = 1 ]; then
        list=$(clean_env env ANSIBLE_COLLECTIONS_PATH="$INSTALL" "$VENV/bin/ansible-galaxy" collection list "$FQCN" 2>/dev/null || true)
        grep -qE "^$FQCN +$VERSION *\$" <<< "$list" || { echo "$list"; fail "ansible-galaxy collection list does not show $FQCN $VERSION in $INSTALL"; ok=0; }
        doc=$(clean_env env ANSIBLE_COLLECTIONS_PATH="$INSTALL" "$VENV/bin/ansible-doc" -t module "$FQCN.kong_upstream" 2>&1) \
            || { sed -n 1,20p <<< "$doc"; fail "ansible-doc -t module $FQCN.kong_upstream"; ok=0; }
        # (no `echo | head` under pipefail: head closing the pipe early fails the pipeline)
        doc_head=${doc%%$'\n'*}
        grep -qF "$COLL_DIR/plugins/modules/kong_upstream.py" <<< "$doc_head" \
            || { sed -n 1,3p <<< "$doc"; fail "ansible-doc did not read kong_upstream from the installed tarball ($COLL_DIR)"; ok=0; }
        echo "$doc_head"
        # every module's documentation (the modules' JSON), every role's argument spec
        modules=""; for f in "$COLL_DIR"/plugins/modules/*.py; do
            f=$(basename "$f" .py); [ "$f" = __init__ ] || modules="$modules $FQCN.$f"; done
        # shellcheck disable=SC2086
        clean_env env ANSIBLE_COLLECTIONS_PATH="$INSTALL" "$VENV/bin/ansible-doc" -t module --json $modules > "$WORK/docs.json" 2> "$WORK/docs.err" \
            || { head -20 "$WORK/docs.err"; fail "ansible-doc on every module of the installed collection"; ok=0; }
        for role in "$COLL_DIR"/roles/*/; do
            role=$(basename "$role")
            clean_env env ANSIBLE_COLLECTIONS_PATH="$INSTALL" "$VENV/bin/ansible-doc" -t role "$FQCN.$role" > /dev/null 2> "$WORK/role.err" \
                || { head -5 "$WORK/role.err"; fail "ansible-doc -t role $FQCN.$role"; ok=0; }
        done
        # the playbooks by their FQCN, as AWX / ansible-playbook users run them
        playbooks=""; for f in "$COLL_DIR"/playbooks/*.yml; do playbooks="$playbooks $FQCN.$(basename "$f" .yml)"; done
        # shellcheck disable=SC2086
        clean_env env ANSIBLE_COLLECTIONS_PATH="$INSTALL" "$VENV/bin/ansible-playbook" -i localhost, --syntax-check $playbooks \
            > "$WORK/syntax.log" 2>&1 || { tail -20 "$WORK/syntax.log"; fail "ansible-playbook --syntax-check on the installed playbooks"; ok=0; }
        n_modules=$(echo "$modules" | wc -w); n_playbooks=$(echo "$playbooks" | wc -w)
    fi
    if [ "$ok" = 1 ]; then step_end ok "installed: ansible-doc ($n_modules modules, roles), $n_playbooks playbooks by FQCN";
    else step_end FAIL "installed collection"; fi
fi

# --- 4. execution environment ------------------------------------------------------------------------------------------
step_start "execution environment (ansible-builder $("$IMPORTER_VENV/bin/ansible-builder" --version))"
ok=1
EE=$WORK/ee
mkdir -p "$EE"
# 4a. what the builder stage computes from the installed collection (its meta/execution-environment.yml)
if [ -d "${COLL_DIR:-}" ]; then
    "$IMPORTER_VENV/bin/ansible-builder" introspect "$INSTALL" --write-pip "$EE/introspect-pip.txt" \
        --write-bindep "$EE/introspect-bindep.txt" > "$EE/introspect.log" 2>&1 || { cat "$EE/introspect.log"; fail "ansible-builder introspect"; ok=0; }
fi
# 4b. the build context of execution-environment.yml (paths in it are relative to it: a copy with the tarball beside)
cp "$ROOT/execution-environment.yml" "$ROOT/requirements.txt" "$ROOT/bindep.txt" "$EE/"
[ -f "$TARBALL" ] && cp "$TARBALL" "$EE/"
"$IMPORTER_VENV/bin/ansible-builder" create -f "$EE/execution-environment.yml" --context "$EE/context" \
    --output-filename Containerfile -v 2 > "$EE/create.log" 2>&1 || { cat "$EE/create.log"; fail "ansible-builder create"; ok=0; }
if [ "$ok" = 1 ]; then
    "$VENV/bin/python" - "$ROOT" "$EE" "$FQCN" "$VERSION" <<'EOF' || ok=0
import os, re, sys, yaml
root, ee, fqcn, version = sys.argv[1:5]
problems = []
def lines(path):
    """Requirement lines of a pip or bindep file, comments and the introspection's '# from collection' notes cut."""
    with open(path) as f:
        return [l.split("#", 1)[0].strip() for l in f if l.split("#", 1)[0].strip()]
def name(req):
    return re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower()
ctx = os.path.join(ee, "context")
containerfile = os.path.join(ctx, "Containerfile")
definition = yaml.safe_load(open(os.path.join(root, "execution-environment.yml")))
meta = yaml.safe_load(open(os.path.join(root, "meta", "execution-environment.yml")))
deps = definition["dependencies"]
# the collection's own declaration, as ansible-builder reads it from an installed collection
if meta.get("version") != 3:
    problems.append("meta/execution-environment.yml: version is not 3")
for kind, default in (("python", "requirements.txt"), ("system", "bindep.txt")):
    f = meta.get("dependencies", {}).get(kind)
    if f != default:
        problems.append("meta/execution-environment.yml: dependencies.%s is %r, not %r" % (kind, f, default))
declared_pip = lines(os.path.join(root, "requirements.txt"))
declared_bindep = lines(os.path.join(root, "bindep.txt"))
for kind, declared in (("pip", declared_pip), ("bindep", declared_bindep)):
    path = os.path.join(ee, "introspect-%s.txt" % kind)
    got = lines(path) if os.path.exists(path) else []
    for req in declared:
        if req not in got:
            problems.append("ansible-builder introspect of the installed collection lacks %r (%s)" % (req, kind))
if not os.path.isfile(containerfile):
    problems.append("no Containerfile in the context")
    text = ""
else:
    text = open(containerfile).read()
# the Containerfile copies every requirement file and installs the pinned ansible-core / ansible-runner on the base image
base = definition["images"]["base_image"]["name"]
for needle in ('EE_BASE_IMAGE="%s"' % base, "COPY _build/requirements.txt", "COPY _build/bindep.txt", "COPY _build /build",
               "-r requirements.yml", "introspect", deps["ansible_core"]["package_pip"], deps["ansible_runner"]["package_pip"]):
    if needle not in text:
        problems.append("Containerfile lacks %r" % needle)
build = os.path.join(ctx, "_build")
for f in ("requirements.txt", "bindep.txt", "requirements.yml", "scripts/assemble", "scripts/introspect.py"):
    if not os.path.isfile(os.path.join(build, f)):
        problems.append("context lacks _build/%s" % f)
if not problems:
    if sorted(map(name, lines(os.path.join(build, "requirements.txt")))) != sorted(map(name, declared_pip)):
        problems.append("_build/requirements.txt differs from the collection's requirements.txt")
    if lines(os.path.join(build, "bindep.txt")) != declared_bindep:
        problems.append("_build/bindep.txt differs from the collection's bindep.txt")
    galaxy = yaml.safe_load(open(os.path.join(build, "requirements.yml")))
    wanted = "%s-%s.tar.gz" % (fqcn.replace(".", "-"), version)
    entries = galaxy.get("collections") or []
    mine = [e for e in entries if os.path.basename(str(e.get("name", ""))) == wanted or e.get("name") == fqcn]
    if not mine:
        problems.append("_build/requirements.yml does not install %s %s (%s)" % (fqcn, version, wanted))
    for e in mine:
        if e.get("type") == "file" and not os.path.isfile(os.path.join(build, e["name"])):
            problems.append("_build/requirements.yml names %s, which is not in the context" % e["name"])
        if e.get("name") == fqcn and str(e.get("version", version)) != version:
            problems.append("_build/requirements.yml pins %s %s, galaxy.yml says %s" % (fqcn, e.get("version"), version))
    # collections the collection depends on (galaxy.yml dependencies) are in the EE too
    deps_declared = yaml.safe_load(open(os.path.join(root, "galaxy.yml"))).get("dependencies") or {}
    names = {e.get("name") for e in entries}
    for dep in deps_declared:
        if dep not in names:
            problems.append("_build/requirements.yml lacks %s (a dependency in galaxy.yml)" % dep)
for p in problems:
    print("package-check: FAIL: EE: " + p, file=sys.stderr)
print("EE context: FROM %s, %s, %s; python %s; system %s; galaxy %s"
      % (base, deps["ansible_core"]["package_pip"], deps["ansible_runner"]["package_pip"],
         ", ".join(declared_pip), ", ".join(declared_bindep), fqcn + " " + version))
sys.exit(1 if problems else 0)
EOF
fi
if [ "$ok" = 1 ]; then step_end ok "EE: context created and valid (ansible-builder create)"; else step_end FAIL "EE context"; fi

# The image: only where a container engine can build it (and reach the base image's registry).
STEP_T=$SECONDS
engine=""
if command -v podman > /dev/null 2>&1 && podman info > /dev/null 2>&1; then engine=podman;
elif command -v docker > /dev/null 2>&1 && docker info > /dev/null 2>&1; then engine=docker; fi
if [ -n "$engine" ]; then
    step_end note "EE image: not built here ($engine is there: ansible-builder build)"
else
    step_end note "EE image: not built (no podman/docker daemon on this machine)"
fi

echo
echo "package-check summary ($((SECONDS - T0)) s):"
printf '  %s\n' "${SUMMARY[@]}"
if [ "$FAILED" != 0 ]; then echo "package-check: FAILED"; exit 1; fi
echo "package-check: passed"
