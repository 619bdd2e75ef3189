#pragma once

// The Kubernetes half of the plan. Pure: desired objects from Git, what the
// management cluster serves (discovery), what it holds (live objects), the
// last applied inventory and the Policy in; the ordered steps and a verdict
// per object out. No clock, no network, no database.
//
// Order: CustomResourceDefinitions first; nothing that depends on a CRD of
// this revision is applied before that CRD is Established. Then Namespaces,
// then the rest. Prune runs the other way round: Clusters first (Cluster API
// tears their machines down through the templates and the identity Secret,
// so those must outlive the Cluster), the rest once no pruned Cluster is
// left, Namespaces after that, CRDs last.

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "reconcilers/kubernetes/kube_client.hpp"
#include "sources/desired_state.hpp"

namespace metalsync {

inline constexpr const char* k_kube_instance_label = "metalsync.dev/instance";
inline constexpr const char* k_kube_source_annotation = "metalsync.dev/source";      // file:line in Git
inline constexpr const char* k_kube_revision_annotation = "metalsync.dev/revision";  // commit applied
inline constexpr const char* k_kube_prune_annotation = "metalsync.dev/prune";        // "disabled": never pruned
inline constexpr const char* k_kube_field_manager = "metalsync";

enum class KubeStepVerb { apply, remove };

struct KubeStep {
    KubeStepVerb verb = KubeStepVerb::apply;
    ObjectRef ref;
    nlohmann::json body;  // apply: the object as sent
    std::string reason;   // one line: why
};

enum class KubeObjectState {
    in_sync,      // live matches every field metalsync sets
    applying,     // absent or changed in Git: an apply is planned
    drifted,      // changed in the cluster: applied again
    waiting,      // held: a CRD not yet Established, being deleted before re-creation
    deleting,     // pruned: delete requested, finalizers running
    pruning,      // removed from Git: a delete is planned
    orphaned,     // removed from Git, prune off in the Policy: left in place
    kept,         // removed from Git, annotated metalsync.dev/prune: disabled
    error,        // cannot be applied (kind not served, no namespace ...)
};

[[nodiscard]] const char* to_string(KubeObjectState state);

struct KubeVerdict {
    ObjectRef ref;
    KubeObjectState state = KubeObjectState::in_sync;
    std::string message;
    std::string source;  // file:line, for objects in Git
};

enum class KubeProblemKind {
    invalid,  // the server refuses the object as Git has it (400, 422): the revision's applies are held
    waiting,  // not yet possible (kind not yet discoverable, namespace or CRD not yet applied)
    failed,   // this object or kind cannot be read or written now (403, 5xx): tried again next pass
};

struct KubeProblem {
    KubeProblemKind kind = KubeProblemKind::failed;
    std::string message;
};

struct KubePlanInput {
    const std::vector<KubeObject>& desired;
    std::string revision;
    std::string instance = "metalsync";
    std::string default_namespace = "default";
    // Kinds the server serves, by "apiVersion/Kind" (e.g. "cluster.x-k8s.io/v1beta1/Cluster", "v1/Secret").
    std::map<std::string, ResourceInfo> resources;
    // Live objects metalsync may touch: those labelled with its instance and
    // those at the references of desired objects.
    std::map<ObjectRef, nlohmann::json> live;
    std::vector<ObjectRef> inventory;  // applied by the last reconcile
    bool prune = false;
    // What the server would store for each object in Git that exists (a
    // dry-run apply; see kube_observer.hpp). An object is in sync when this
    // equals the live object (comparable_view of both).
    std::map<ObjectRef, nlohmann::json> server_view;
    std::map<ObjectRef, KubeProblem> object_problems;  // objects in Git the server could not take
    std::map<std::string, KubeProblem> kind_problems;  // by resource_key: kinds not served or not listable
};

struct KubePlan {
    std::vector<KubeStep> steps;  // in the order to run them
    std::vector<KubeVerdict> verdicts;
    std::vector<ObjectRef> inventory;  // the desired set, once applied
};

[[nodiscard]] std::string resource_key(const std::string& api_version, const std::string& kind);

[[nodiscard]] KubePlan plan_kube(const KubePlanInput& input);

// The body metalsync sends for a desired object: namespace defaulted (for
// namespaced kinds), the instance label, source and revision annotations.
// Left out: server-owned metadata; `status` of kinds with a status
// subresource (the server ignores it on apply); and CA bundles that
// cert-manager's cainjector owns (objects annotated cert-manager.io/inject-ca-from,
// inject-ca-from-secret or inject-apiserver-ca): Git carries a placeholder
// there, and applying it would undo the injection every pass.
[[nodiscard]] nlohmann::json prepared_body(const KubeObject& object, const std::string& revision,
                                           const std::string& instance, const std::string& default_namespace,
                                           bool namespaced, bool has_status);

// The object with what does not decide whether an apply would change it
// taken out: status, resourceVersion, generation, managedFields, uid,
// creationTimestamp, deletion fields, and metalsync's revision annotation (a
// new commit alone is no reason to apply).
[[nodiscard]] nlohmann::json comparable_view(const nlohmann::json& object);

// A field where the live object differs from what the server would store on
// apply, and the other field managers (from live's managedFields) that own it now.
struct DriftedField {
    std::string path;                 // ".spec.replicas", ".metadata.labels[metalsync.dev/instance]"
    std::vector<std::string> owners;  // e.g. {"kubectl-edit"}; empty when nobody else owns it
};

// Where `server_view` (the dry-run answer) and `live` differ, both through
// comparable_view, in both directions. A list that differs is one path.
// Object references (maps with apiVersion, kind and name below the top level)
// that differ only in the version of the same group are equal: Cluster API
// rewrites a reference to the newest version of its contract, by conversion
// (v1.11+) or by its controllers (UpdateReferenceAPIContract, before).
[[nodiscard]] std::vector<DriftedField> drifted_fields(const nlohmann::json& server_view, const nlohmann::json& live,
                                                       std::size_t limit = 8);

[[nodiscard]] nlohmann::json to_json(const KubeVerdict& verdict);

} // namespace metalsync
