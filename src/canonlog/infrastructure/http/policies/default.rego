# The default authorization policy of the canonlog HTTP service.
#
# The service evaluates data.canonlog.authz for every authenticated request, with
#   input.subject  the token's sub
#   input.scopes   the token's scopes (read, append, operate, approve, request, commit)
#   input.ledger   the ledger the service hosts
#   input.stream   the stream in the path, or null
#   input.task     the task_id of an append, or null
#   input.action   the route: append, read_stream, read_all, read_event, head,
#                  ledger_state, halt, list_checkpoints, latest_checkpoint,
#                  checkpoint, checkpoint_note, start_verification, list_verifications,
#                  verification, tail, websocket_tail, list_ceremonies, ceremony,
#                  propose_failover, approve_ceremony, approve_resume,
#                  gateway_request, gateway_ticket, gateway_statement, gateway_approve,
#                  gateway_reject, gateway_commit, gateway_audit
# and allows the request only when `allow` is true. `reasons` says why not.
#
# This policy grants each action to the scope it needs and nothing more. Copy it,
# add rules (a subject limited to a stream prefix, a task allowed to append to
# its own streams only), and point CANONLOG_AUTHZ_POLICY_FILE at the copy.
package canonlog.authz

import rego.v1

required_scope := {
	"append": "append",
	"halt": "operate",
	"start_verification": "operate",
	"propose_failover": "operate",
	"approve_ceremony": "approve",
	"approve_resume": "approve",
	"gateway_request": "request",
	"gateway_approve": "approve",
	"gateway_reject": "approve",
	"gateway_commit": "commit",
}

scope_needed := required_scope[input.action] if {
	input.action in object.keys(required_scope)
} else := "read"

default allow := false

allow if scope_needed in input.scopes

reasons contains sprintf("%s needs the %s scope", [input.action, scope_needed]) if {
	not scope_needed in input.scopes
}
