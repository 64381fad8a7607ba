#!/bin/sh
# Create the user the simulated nodes' sshd logs in (vtflow-node), as root; does nothing if it
# exists. Used by scripts/test-prereqs.sh (`make test`): the tests run as root and log their sshd
# nodes in this user (the sandbox needs no such user: its nodes log in whoever runs it).
set -eu
USER_NAME=vtflow-node
id "$USER_NAME" >/dev/null 2>&1 && exit 0
[ "$(id -u)" = 0 ] || { echo "creating user $USER_NAME needs root: sudo sh $0" >&2; exit 1; }
# /bin/sh: root's .bashrc (pyenv init) would add ~0.2 s to every SSH command
useradd --system --create-home --shell /bin/sh "$USER_NAME"
# '*': no password login, but not "locked" (sshd refuses locked accounts even for keys)
usermod -p '*' "$USER_NAME"
