#!/bin/sh
# What the test suite (and `vtflow sandbox up`) needs from the system: Debian packages and an SSH node user.
# As root it installs them; otherwise it names them and stops.
set -eu
PACKAGES="mariadb-server mariadb-client openssh-server openssh-client iputils-ping postgresql"
USER_NAME=vtflow-node
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
need_user=no
id "$USER_NAME" >/dev/null 2>&1 || need_user=yes
if [ -z "$missing" ] && [ "$need_user" = no ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  [ -n "$missing" ] && echo "The tests need these Debian packages:$missing" >&2 && echo "  sudo apt-get install -y$missing" >&2
  [ "$need_user" = yes ] && echo "and the SSH node user: sudo sh scripts/node-user.sh" >&2
  echo "Or run 'make test' as root to do this for you." >&2
  exit 1
fi
if [ -n "$missing" ]; then
  echo "installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
if [ "$need_user" = yes ]; then
  # the user the tests' sshd nodes log in (the sandbox logs in whoever runs it)
  sh "$(dirname "$0")/node-user.sh"
fi
