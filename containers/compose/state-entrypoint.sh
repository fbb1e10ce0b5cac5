#!/bin/sh
# The state service: sshd serving the bare state repo (/srv/state.git) and the target repos
# (/srv/repos) to the keys in authorized_keys (the agents' and the operator's, `restrict`ed),
# with the host key that the agents' and the operator's known_hosts pin. No password, no other
# user, no unauthenticated port. The root filesystem is read-only: what sshd needs is in /run.
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
    -o MaxStartups=30:30:100 \
    -o LogLevel=INFO
