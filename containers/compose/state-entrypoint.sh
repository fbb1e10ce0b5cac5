#!/bin/sh
# The state service: sshd serving the bare state repo (/srv/state.git) and the target repos
# (/srv/repos) to the keys in authorized_keys (the agents' and the operator's, `restrict`ed),
# with the host key that the agents' and the operator's known_hosts pin. No password, no other
# user, no unauthenticated port. The root filesystem is read-only: what sshd needs is in /run.
# The repos are the operator's, bind-mounted: owned by whoever ran `invoke compose.up`, so git
# (as root here) would refuse them as of "dubious ownership" unless told they are safe; the
# sessions' environment tells it (git reads safe.directory from GIT_CONFIG_* as from -c).
set -eu
install -d -m 0755 /run/sshd
install -d -m 0700 /run/ssh
install -m 0600 /run/secrets/host_key /run/ssh/host_key
install -m 0600 /run/secrets/authorized_keys /run/ssh/authorized_keys
exec /usr/sbin/sshd -D -e -f /dev/null \
    -o HostKey=/run/ssh/host_key \
    -o AuthorizedKeysFile=/run/ssh/authorized_keys \
    -o PermitRootLogin=prohibit-password \
    -o PasswordAuthentication=no \
    -o KbdInteractiveAuthentication=no \
    -o AllowUsers=root \
    -o PidFile=/run/sshd.pid \
    -o "SetEnv=GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0=*" \
    -o MaxStartups=30:30:100 \
    -o LogLevel=INFO
