#pragma once

// Reading the objects the provider works from into its pure types: a
// MetalsyncMachine as the API server lists it, the Machine's bootstrap data
// Secret, and the nodes of a revision with Ironic's observation. Pure: JSON
// and data structures in, no client, no clock.

#include <expected>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "reconcilers/observed_state.hpp"
#include "reconcilers/provider/claim.hpp"
#include "reconcilers/provider/pool.hpp"
#include "sources/desired_state.hpp"
#include "store/records.hpp"

namespace metalsync::provider {

inline constexpr const char* k_infrastructure_group = "infrastructure.cluster.x-k8s.io";
inline constexpr const char* k_provider_api_version = "infrastructure.cluster.x-k8s.io/v1alpha1";
// The finalizer metalsync puts on each MetalsyncMachine before it claims a
// node, so the claim is always released before the object goes (CAPM3's is
// metal3machine.infrastructure.cluster.x-k8s.io).
inline constexpr const char* k_machine_finalizer = "metalsyncmachine.infrastructure.cluster.x-k8s.io";
inline constexpr const char* k_cluster_name_label = "cluster.x-k8s.io/cluster-name";

[[nodiscard]] std::expected<HostSelector, std::string> host_selector_from_json(const nlohmann::json& selector);
[[nodiscard]] std::expected<MachineSpec, std::string> machine_spec_from_json(const nlohmann::json& spec);

// A MetalsyncMachine object. What the object cannot tell is left at its
// default for the wiring to fill from the owners: `paused` here is the
// cluster.x-k8s.io/paused annotation only (OR in the Cluster's spec.paused),
// cluster_infrastructure_ready and machine_failure_domain come from the
// Cluster and the Machine.
[[nodiscard]] std::expected<Machine, std::string> machine_from_json(const nlohmann::json& object);

// The Machine's bootstrap data Secret: data.value (required) and data.format
// (cloud-config when absent), base64 as the API server returns them.
[[nodiscard]] std::expected<BootstrapData, std::string> bootstrap_from_secret(const nlohmann::json& secret);

// The provider's view of every node known to Git or Ironic, by name.
[[nodiscard]] std::vector<PoolNode> pool_nodes(const DesiredState& desired, const ObservedState& observed);

// The store's claim rows as a ClaimTable. A row with an unknown phase, or a
// second claim on a node the table already gives away, is skipped and
// described in `problems` (the database's constraints should make both
// impossible).
[[nodiscard]] ClaimTable claim_table_from_rows(const std::vector<ClaimRow>& rows, std::vector<std::string>* problems);
[[nodiscard]] ClaimRow claim_row(const ClaimRecord& record, double now);

} // namespace metalsync::provider
