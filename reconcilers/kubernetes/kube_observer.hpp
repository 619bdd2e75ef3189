#pragma once

// What the management cluster holds for one revision, read the way the API
// server decides it: discovery (with the kinds a new CRD serves before
// discovery lists them), the live objects of each kind, and, for every
// object in Git, the object the server would store if it were applied now
// (a server-side apply with dryRun=All). plan_kube compares that answer with
// the live object: conversion webhooks, defaulting webhooks, schema pruning,
// canonical quantities and list merging all happen on the server, so an
// object is in sync exactly when applying it again would change nothing.
//
// Failures stay where they happen: a kind that cannot be listed (403 from
// RBAC, a 500 from a provider's conversion webhook) is a problem of that
// kind, an object the server refuses is a problem of that object. Only an
// unreachable server or a refused credential ends the pass (`fatal`).
//
// The dry runs cost one request per object; an object found in sync is not
// asked about again until its Git body or its live object changes (its
// generation, labels or annotations, or its resourceVersion for kinds without
// a generation), so a settled cluster costs only the lists.

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "reconcilers/kubernetes/kube_client.hpp"
#include "reconcilers/kubernetes/kube_planner.hpp"
#include "sources/desired_state.hpp"

namespace metalsync {

struct KubeObservation {
    std::map<std::string, ResourceInfo> resources;       // by resource_key, kinds the server serves
    std::map<std::string, KubeProblem> kind_problems;    // by resource_key: not served, waiting, not listable
    std::map<ObjectRef, nlohmann::json> live;            // labelled with the instance, or named in Git
    std::map<ObjectRef, nlohmann::json> server_view;     // dry-run answers, for objects in Git
    std::map<ObjectRef, KubeProblem> object_problems;    // objects in Git the server could not take
    std::map<ObjectRef, std::vector<std::string>> warnings;  // Warning headers of the dry runs
    std::optional<ApiError> fatal;                        // unreachable, or credentials refused
    int dry_runs = 0;                                     // dry-run requests this observation sent
};

struct KubeObserveInput {
    const std::vector<KubeObject>& desired;
    const std::vector<ObjectRef>& inventory;
    std::string revision;
    std::string instance = "metalsync";
    std::string default_namespace = "default";
};

// How long a kind missing from discovery is reported as waiting before it is
// an error: a CRD installed by another tool (clusterctl init) a moment ago is
// served before discovery lists it.
inline constexpr std::chrono::seconds k_discovery_grace{30};

class KubeObserver {
public:
    KubeObservation observe(KubeClient& client, const KubeObserveInput& input);

    // After a real apply: the object the server stored is in sync with `body`.
    void remember_applied(const ObjectRef& ref, const nlohmann::json& body, const nlohmann::json& stored,
                          const std::map<std::string, ResourceInfo>& resources);
    void forget();  // a new client (another server, another context)

private:
    std::map<ObjectRef, std::string> m_in_sync;  // ref -> cache key of the last dry run that found it in sync
    std::map<std::string, std::chrono::steady_clock::time_point> m_first_miss;  // resource key -> first discovery miss
};

// The kind a CustomResourceDefinition serves at `api_version`, when it is
// Established, not being deleted, and serves that version.
[[nodiscard]] std::optional<ResourceInfo> resource_from_crd(const nlohmann::json& crd, const std::string& api_version,
                                                            const std::string& kind);

} // namespace metalsync
