#pragma once

// Runs one planned node Action against Ironic: a few REST calls, never a
// wait for a transition (the next tick observes where the node went).
//
// The runner is where credentials meet Ironic: create_node, adopt_node and
// update_node read the node's credentials file and put the username and
// password into driver_info under the driver's keys. Nothing it returns
// holds a secret: errors and summaries pass through redact().
//
// Memory updates it returns (ActionResult's optionals), and why:
// - create_node / adopt_node: uuid, applied_secret_hash; create_node also
//   inspected = false (a new enrollment has not been inspected).
// - update_node with credentials: applied_secret_hash of what was written
//   (read now, so a file changed since planning is not mis-recorded).
// - inspect: inspected = true when inspection is *requested*. Inspection is
//   asynchronous; a failed one shows up as `inspect failed`, and
//   learn_from_observation() (node_memory_conversion.hpp) clears the flag
//   when it sees that state, so the planner inspects again after the
//   `manage` retry. Counting "requested" as done is therefore sound, and it
//   needs no extra state to tell "inspected and back to manageable" from
//   "not yet inspected".
// - collect_inspection: the inspection read (GET inventory, or the node's
//   properties on 404/406), in `inspection`; the daemon stores it and the
//   planner compares it with `expect` (reconcilers/inspection.hpp).
// - clean: clean_steps_hash when the manual clean is requested; cleared the
//   same way on `clean failed`.
// - deploy / rebuild: config_drive_hash when requested.
// - was_active is never set here: it is what the daemon *observes*.

#include <string>

#include "reconcilers/action_result.hpp"
#include "reconcilers/credentials.hpp"
#include "reconcilers/ironic/ironic_client.hpp"
#include "reconcilers/plan.hpp"

namespace metalsync {

class NodeActionRunner {
  public:
    NodeActionRunner(IronicClient& client, const CredentialsDirectory& credentials, std::string hmac_key);

    // `observed` is the node as last observed, or null when Ironic does not
    // know it (create_node, adopt_node). Never throws for Ironic or file
    // errors; they come back as ActionResult{ok = false}.
    [[nodiscard]] ActionResult run(const Action& action, const ObservedNode* observed);

  private:
    IronicClient& m_client;
    const CredentialsDirectory& m_credentials;
    std::string m_hmac_key;
};

// The ActionResult for a failed Ironic call: error_type from the HTTP status
// (400/406/422 validation, 409 locked or conflict, 404 not-found, 0/429/5xx
// unavailable, 401/403 unavailable and not retryable), the message redacted.
[[nodiscard]] ActionResult action_error(const Action& action, const ApiError& error);

} // namespace metalsync
