#!/bin/sh
# Writes the development session key that deploy/compose.yaml mounts as a Docker secret.
# 64 random bytes, hex-encoded; an existing key is kept so sessions survive a re-run.
set -eu
dir=$(dirname "$0")
key="$dir/session_secret"
if [ -s "$key" ]; then
    echo "kept existing $key"
    exit 0
fi
# 0644, not 0600: Compose bind-mounts file secrets with the host file's owner and mode, and keel
# runs as uid 65532 inside the container. Production uses Swarm/systemd secrets instead.
umask 022
od -An -vtx1 -N64 /dev/urandom | tr -d ' \n' > "$key"
echo "wrote $key"
