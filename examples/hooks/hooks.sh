#!/bin/sh
# Command hooks in plain POSIX shell, without a JSON library: an audit log on stderr, and an
# action handler. It relies on two things the runtime guarantees for requests: each is one
# line, and it starts with {"id":N,"event":"NAME", in that order.
#
# Used by examples/hooks/shell.yml.

while IFS= read -r line; do
  id=$(printf '%s\n' "$line" | sed -n 's/^{"id":\([0-9]*\),.*/\1/p')
  event=$(printf '%s\n' "$line" | sed -n 's/^{"id":[0-9]*,"event":"\([a-z_]*\)".*/\1/p')
  case "$event" in
    state_enter)
      state=$(printf '%s\n' "$line" | sed -n 's/^{"id":[0-9]*,"event":"state_enter","state":"\([^"]*\)".*/\1/p')
      echo "audit: entering $state" >&2
      echo "{\"id\":$id}"
      ;;
    action)
      action=$(printf '%s\n' "$line" | sed -n 's/^{"id":[0-9]*,"event":"action","action":"\([^"]*\)".*/\1/p')
      if [ "$action" = "notify" ]; then
        echo "audit: notifying" >&2
        echo "{\"id\":$id,\"handled\":true}"
      else
        echo "{\"id\":$id,\"handled\":false}"
      fi
      ;;
    *)
      # No changes: an empty reply (the id is optional).
      echo "{}"
      ;;
  esac
done
