#pragma once

// The node memory's three homes: the store's NodeStatus row, the planner's
// NodeMemory, and what each ActionResult and observation teaches. Here,
// because the store must not depend on reconcilers.

#include "reconcilers/action_result.hpp"
#include "reconcilers/node_planner.hpp"
#include "reconcilers/observed_state.hpp"
#include "store/records.hpp"

namespace metalsync {

// NodeStatus -> NodeMemory (a missing next_attempt_at is 0: no backoff).
[[nodiscard]] NodeMemory node_memory(const NodeStatus& status);

// Writes the memory's fields into `status`, leaving the store-only fields
// (name, failed, last_error_type, last_error, since) as they are.
void store_memory(NodeStatus& status, const NodeMemory& memory);

// The memory updates of a successful result (its set optionals, and the uuid).
// A failed result changes nothing here: attempts and backoff are the
// executor's to count. A result that sets `inspected` (an inspection
// requested, a new enrollment) drops the collected inspection: it described
// the hardware before; one that carries an inspection sets it.
void apply_result(NodeMemory& memory, const ActionResult& result);

// The store's inspection row <-> the planner's InspectionMemory. The row
// keeps what was read whole (the inventory JSON or the properties subset,
// with its source), the memory only the facts the planner compares.
[[nodiscard]] InspectionMemory inspection_memory(const InspectionRecord& record);
[[nodiscard]] InspectionRecord inspection_record(const std::string& name, const std::string& uuid,
                                                 const nlohmann::json& collected, double now);

// What one observation of the node teaches the memory:
// - uuid: the one Ironic reports;
// - was_active: set when the node is seen active (and settled), cleared when
//   it is seen in any state outside the active/adoption path (available,
//   cleaning, deploying, failures, ...), so only a node that really was
//   active is ever adopted after Ironic forgets it — and a node in
//   enroll/verifying/manageable with was_active set is one being adopted;
// - inspected: cleared on `inspect failed` (inspection is asynchronous; the
//   runner marks it when requested);
// - clean_steps_hash: cleared on `clean failed`, so the manual steps run again
//   after the `manage` retry and a failure that persists is counted and
//   reported instead of being forgotten. (A failed *automated* clean clears it
//   too: the manual steps then run once more, which only repeats what Git asks.)
void learn_from_observation(NodeMemory& memory, const ObservedNode& node);

} // namespace metalsync
