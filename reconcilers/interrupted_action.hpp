#pragma once

// An action that was in flight when the daemon died (kill -9, power loss):
// its journal entry says it started, not how it ended. At the next start,
// once Ironic has been observed again, each such entry is judged from what
// Ironic shows: did the request reach Ironic (done), did Ironic then fail
// the step (failed), or did it never arrive (not started)? Pure: the verb
// and parameters as journaled, when the attempt started, the node as
// observed (null when Ironic has no node of that name).
//
// Provision-state verbs are told apart by the state the node is in and by
// provision_updated_at: a node that moved into the verb's states after the
// attempt started was moved by it (nobody else drives these nodes). Ports,
// maintenance and power compare the field the action sets. An update whose
// effect cannot be told from the node is `unknown`: the next plan, made on
// this observation, asks again only if it is still needed.

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "reconcilers/observed_state.hpp"

namespace metalsync {

enum class InterruptedOutcome { done, failed, not_started, unknown };

struct InterruptedResolution {
    InterruptedOutcome outcome = InterruptedOutcome::unknown;
    std::string reason;  // one line for the journal, the event and the log
};

[[nodiscard]] const char* to_string(InterruptedOutcome outcome);

// `started_at`: unix seconds, when the worker took the action (journal).
[[nodiscard]] InterruptedResolution resolve_interrupted(std::string_view verb, const nlohmann::json& params,
                                                        std::optional<double> started_at, const ObservedNode* node);

// Ironic's provision_updated_at ("2026-12-02T10:00:01.123456+00:00", or
// without zone: UTC) as unix seconds; nullopt when empty or malformed.
[[nodiscard]] std::optional<double> parse_ironic_time(std::string_view text);

} // namespace metalsync
