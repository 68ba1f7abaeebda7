#!/usr/bin/env bash
# Build the container image with podman and run it, on a machine with no image registry and no
# download.pytorch.org (`make container-check`):
#   1. podman and debootstrap from apt when missing;
#   2. the base image (BASE_IMAGE), when missing: Debian bookworm (python 3.11) with python3 and python3-venv,
#      made with debootstrap from DEBIAN_MIRROR and imported with `podman import`;
#   3. the image (IMAGE) from the working tree's Dockerfile with BASE=BASE_IMAGE and torch from TORCH_WHEEL
#      (mounted into the build; unset or missing: TORCH_INDEX as in the Dockerfile), the rest from PyPI;
#   4. its default command, the demo, with SSM_METARL_NATIVE=1 (the native scan kernel must compile): the
#      tables' rows must be printed;
#   5. the app served from it on 127.0.0.1:PORT (`ssm-metarl app --host 0.0.0.0` inside): / must answer 200
#      with gradio's page within APP_TIMEOUT seconds; then the container is stopped.
# Exits non-zero when any step fails. Runs as root (rootful podman), or through sudo.
# STORAGE_DRIVER=vfs (podman's own variable) where the overlay driver does not work.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

IMAGE=${IMAGE:-localhost/ssm-metarl:check}
BASE_IMAGE=${BASE_IMAGE:-localhost/debian-bookworm-python:latest}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TORCH_WHEEL=${TORCH_WHEEL-/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl}
APP_TIMEOUT=${APP_TIMEOUT:-240}
DEMO_TIMEOUT=${DEMO_TIMEOUT:-900}
PORT=${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
# the build's network: podman's default (its bridge) unless set (e.g. host)
BUILD_NETWORK=${BUILD_NETWORK:-}
# the CA certificates the build's pip trusts, mounted over the image's own during the build only (Debian's pip
# reads /etc/ssl/certs/ca-certificates.crt): the host's, so that a TLS-intercepting proxy's CA is trusted
CA_BUNDLE=${CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
PODMAN=(podman)
if [ -n "$SUDO" ]; then PODMAN=("$SUDO" podman); fi
# extra options when podman's defaults cannot start a container here (set after the base image exists)
PODMAN_GLOBAL=()
CONTAINER_OPTS=()
WORK=$(mktemp -d)
APP_CONTAINER="ssm-metarl-check-$$"
APP_STARTED=""
cleanup() {
    if [ -n "$APP_STARTED" ]; then "${PODMAN[@]}" rm -f "$APP_CONTAINER" > /dev/null 2>&1 || true; fi
    $SUDO rm -rf "$WORK"
}
trap cleanup EXIT

VERIFIED=()
T0=$SECONDS
step() { echo; echo "== $*"; }
fail() { echo "container-check FAILED: $*" >&2; exit 1; }

step "podman and debootstrap"
missing=()
command -v podman > /dev/null || missing+=(podman)
command -v debootstrap > /dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} (apt)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" > /dev/null
fi
"${PODMAN[@]}" info --format 'podman {{.Version.Version}}, storage {{.Store.GraphDriverName}}, network {{.Host.NetworkBackend}}' \
    || fail "podman does not start (try STORAGE_DRIVER=vfs)"

step "base image $BASE_IMAGE"
t=$SECONDS
if "${PODMAN[@]}" image exists "$BASE_IMAGE"; then
    echo "present"
else
    rootfs="$WORK/rootfs"
    PATH="$PATH:/usr/sbin:/sbin" $SUDO debootstrap --variant=minbase --include=python3,python3-venv \
        bookworm "$rootfs" "$DEBIAN_MIRROR" > "$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log"; fail "debootstrap bookworm from $DEBIAN_MIRROR"; }
    mirror_security=${DEBIAN_MIRROR%/debian}/debian-security
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
        "$DEBIAN_MIRROR" "$DEBIAN_MIRROR" "$mirror_security" | $SUDO tee "$rootfs/etc/apt/sources.list" > /dev/null
    # as Debian's official images do: apt keeps no downloaded packages nor caches in the image's layers
    printf '%s\n' \
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
        'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' | $SUDO tee "$rootfs/etc/apt/apt.conf.d/docker-clean" > /dev/null
    $SUDO rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/*
    $SUDO tar -C "$rootfs" -c . | "${PODMAN[@]}" import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" > /dev/null \
        || fail "podman import of the debootstrap root file system"
    $SUDO rm -rf "$rootfs"
    echo "made in $((SECONDS - t)) s"
fi

step "a container from $BASE_IMAGE"
if ! "${PODMAN[@]}" run --rm "$BASE_IMAGE" true 2> "$WORK/probe.log"; then
    # as on the machine this was written on: crun refuses hybrid cgroups ("cgroups in hybrid mode not
    # supported") and, without CAP_SYS_RESOURCE, podman's default ulimits cannot be set ("setrlimit
    # RLIMIT_NOFILE: Operation not permitted"): runc and ulimits within the ones podman has
    echo "podman's defaults cannot start a container: $(tail -1 "$WORK/probe.log")"
    if ! command -v runc > /dev/null; then
        echo "installing runc (apt)"
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq runc > /dev/null
    fi
    PODMAN_GLOBAL=(--runtime runc)
    CONTAINER_OPTS=(--ulimit nofile=16384:16384 --ulimit nproc=32768:32768)
    "${PODMAN[@]}" "${PODMAN_GLOBAL[@]}" run --rm "${CONTAINER_OPTS[@]}" "$BASE_IMAGE" true \
        || fail "podman cannot start a container, with its defaults nor with runc and ulimits"
    echo "with ${PODMAN_GLOBAL[*]} ${CONTAINER_OPTS[*]}: it starts"
    PODMAN+=("${PODMAN_GLOBAL[@]}")
else
    echo "podman's defaults start it"
fi
base_python=$("${PODMAN[@]}" run --rm "${CONTAINER_OPTS[@]}" "$BASE_IMAGE" python3 --version) || fail "python3 in $BASE_IMAGE"
echo "$base_python"
VERIFIED+=("base image $BASE_IMAGE (Debian bookworm, $base_python)")

step "build $IMAGE"
t=$SECONDS
build_args=("${CONTAINER_OPTS[@]}" --build-arg "BASE=$BASE_IMAGE" -t "$IMAGE")
if [ -n "$BUILD_NETWORK" ]; then build_args+=(--network "$BUILD_NETWORK"); fi
if [ -n "$CA_BUNDLE" ] && [ -f "$CA_BUNDLE" ]; then
    build_args+=(-v "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")
fi
if [ -n "$TORCH_WHEEL" ] && [ -f "$TORCH_WHEEL" ]; then
    wheel_dir=$(cd "$(dirname "$TORCH_WHEEL")" && pwd)
    build_args+=(-v "$wheel_dir:/wheels:ro" --build-arg "TORCH_WHEEL=/wheels/$(basename "$TORCH_WHEEL")")
    torch_from="the local wheel $(basename "$TORCH_WHEEL")"
else
    torch_from="the Dockerfile's TORCH_INDEX"
fi
echo "torch from $torch_from"
old_id=$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$IMAGE" 2> /dev/null || true)
set +e
"${PODMAN[@]}" build "${build_args[@]}" . 2>&1 | tee "$WORK/build.log" | grep --line-buffered -E '^(STEP|COMMIT)'
build_rc=${PIPESTATUS[0]}
set -e
[ "$build_rc" -eq 0 ] || { tail -30 "$WORK/build.log"; fail "podman build (exit status $build_rc)"; }
"${PODMAN[@]}" image exists "$IMAGE" || { tail -30 "$WORK/build.log"; fail "podman build made no $IMAGE"; }
build_s=$((SECONDS - t))
# the image this build replaced, now untagged, goes (its layers shared with the new one stay)
if [ -n "$old_id" ] && [ "$old_id" != "$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$IMAGE")" ]; then
    "${PODMAN[@]}" rmi "$old_id" > /dev/null 2>&1 || true
fi
size_bytes=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
size_mb=$((size_bytes / 1000000))
inside=$("${PODMAN[@]}" run --rm "${CONTAINER_OPTS[@]}" "$IMAGE" python -c 'import os, sys, torch, ssm_metarl
print(f"uid {os.getuid()}, python {sys.version.split()[0]}, torch {torch.__version__}, ssm-metarl {ssm_metarl.__version__}")') \
    || fail "python, torch and ssm_metarl in the image"
echo "built in $build_s s, $size_mb MB; inside: $inside"
VERIFIED+=("image $IMAGE built in $build_s s (torch from $torch_from), $size_mb MB; inside: $inside")

step "the demo: podman run --rm $IMAGE"
t=$SECONDS
if ! timeout "$DEMO_TIMEOUT" "${PODMAN[@]}" run --rm "${CONTAINER_OPTS[@]}" -e SSM_METARL_NATIVE=1 "$IMAGE" > "$WORK/demo.log" 2>&1; then
    tail -30 "$WORK/demo.log"
    fail "the demo in the image (exit status above, or over DEMO_TIMEOUT=$DEMO_TIMEOUT s)"
fi
cat "$WORK/demo.log"
demo_s=$((SECONDS - t))
for row in "zero-shot (meta-trained)" "standard, after" "hybrid, after" "PPO from scratch" "in-context (RL²)" \
    "adaptation curves: runs/demo/adaptation.png"; do
    grep -qF "$row" "$WORK/demo.log" || fail "the demo's output has no '$row' row"
done
VERIFIED+=("the demo (the image's default command) ran in $demo_s s with the native scan kernel; its tables have the zero-shot, standard, hybrid, PPO-from-scratch and in-context rows")

step "the app: podman run -d -p 127.0.0.1:$PORT:7860 $IMAGE ssm-metarl app --host 0.0.0.0"
t=$SECONDS
"${PODMAN[@]}" run -d "${CONTAINER_OPTS[@]}" --name "$APP_CONTAINER" -p "127.0.0.1:$PORT:7860" "$IMAGE" ssm-metarl app --host 0.0.0.0 > /dev/null \
    || fail "podman run of the app"
APP_STARTED=1
status=""
while [ $((SECONDS - t)) -lt "$APP_TIMEOUT" ]; do
    status=$(curl -s -o "$WORK/page.html" -w '%{http_code}' "http://127.0.0.1:$PORT/" || true)
    if [ "$status" = 200 ] && grep -qi gradio "$WORK/page.html"; then break; fi
    if [ "$("${PODMAN[@]}" inspect --format '{{.State.Running}}' "$APP_CONTAINER")" != true ]; then
        "${PODMAN[@]}" logs "$APP_CONTAINER" | tail -30
        fail "the app's container exited"
    fi
    sleep 2
done
if [ "$status" != 200 ] || ! grep -qi gradio "$WORK/page.html"; then
    "${PODMAN[@]}" logs "$APP_CONTAINER" | tail -30
    fail "http://127.0.0.1:$PORT/ did not answer 200 with gradio's page within $APP_TIMEOUT s (last status '$status')"
fi
app_s=$((SECONDS - t))
page_bytes=$(wc -c < "$WORK/page.html")
echo "http://127.0.0.1:$PORT/ answered 200 after $app_s s ($page_bytes bytes, gradio's page)"
t=$SECONDS
"${PODMAN[@]}" stop -t 20 "$APP_CONTAINER" > /dev/null 2>&1 || fail "podman stop of the app"
stop_s=$((SECONDS - t))
exit_code=$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "$APP_CONTAINER")
"${PODMAN[@]}" rm "$APP_CONTAINER" > /dev/null
APP_STARTED=""
# 137: killed after the stop timeout, the app having ignored the image's STOPSIGNAL
[ "$exit_code" != 137 ] || fail "the app did not stop on its stop signal within 20 s (SIGKILL, exit code 137)"
echo "stopped in $stop_s s on its stop signal (exit code $exit_code)"
VERIFIED+=("the app served from the image on 127.0.0.1:$PORT answered 200 with gradio's page after $app_s s; podman stop ended it in $stop_s s (exit code $exit_code)")

echo
echo "container-check passed in $((SECONDS - T0)) s (commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- Dockerfile .dockerignore pyproject.toml README.md LICENSE ssm_metarl 2>/dev/null || echo ', image built from a working tree with uncommitted changes')):"
for line in "${VERIFIED[@]}"; do echo "  - $line"; done
