#include "reconcilers/kubernetes/kube_planner.hpp"

#include <algorithm>

namespace metalsync {

using nlohmann::json;

const char* to_string(KubeObjectState state)
{
    switch (state) {
    case KubeObjectState::in_sync: return "in-sync";
    case KubeObjectState::applying: return "applying";
    case KubeObjectState::drifted: return "drifted";
    case KubeObjectState::waiting: return "waiting";
    case KubeObjectState::deleting: return "deleting";
    case KubeObjectState::pruning: return "pruning";
    case KubeObjectState::orphaned: return "orphaned";
    case KubeObjectState::kept: return "kept";
    case KubeObjectState::error: return "error";
    }
    return "unknown";
}

std::string resource_key(const std::string& api_version, const std::string& kind)
{
    return api_version + "/" + kind;
}

namespace {

bool is_crd(const ObjectRef& ref)
{
    return ref.kind == "CustomResourceDefinition" && ref.api_version.starts_with("apiextensions.k8s.io/");
}

bool is_namespace(const ObjectRef& ref) { return ref.kind == "Namespace" && ref.api_version == "v1"; }

bool is_capi_cluster(const ObjectRef& ref)
{
    return ref.kind == "Cluster" && ref.api_version.starts_with("cluster.x-k8s.io/");
}

int apply_group(const ObjectRef& ref)
{
    if (is_crd(ref)) return 0;
    if (is_namespace(ref)) return 1;
    return 2;
}

// Prune phases: Clusters, the rest, Namespaces, CRDs.
int prune_phase(const ObjectRef& ref)
{
    if (is_capi_cluster(ref)) return 0;
    if (is_crd(ref)) return 3;
    if (is_namespace(ref)) return 2;
    return 1;
}

std::string string_at(const json& object, const json::json_pointer& pointer)
{
    if (!object.contains(pointer)) return {};
    const json& value = object.at(pointer);
    return value.is_string() ? value.get<std::string>() : std::string{};
}

bool being_deleted(const json& live)
{
    const auto meta = live.find("metadata");
    return meta != live.end() && meta->is_object() && meta->contains("deletionTimestamp") &&
           !(*meta)["deletionTimestamp"].is_null();
}

std::string finalizers_text(const json& live)
{
    std::string text;
    const json* finalizers = nullptr;
    if (live.contains("metadata") && live["metadata"].contains("finalizers")) {
        finalizers = &live["metadata"]["finalizers"];
    }
    if (finalizers == nullptr || !finalizers->is_array()) return text;
    for (const auto& f : *finalizers) {
        if (!f.is_string()) continue;
        if (!text.empty()) text += ", ";
        text += f.get<std::string>();
    }
    return text;
}

bool crd_established(const json& crd)
{
    const json::json_pointer conditions("/status/conditions");
    if (!crd.contains(conditions) || !crd.at(conditions).is_array()) return false;
    for (const auto& c : crd.at(conditions)) {
        if (c.value("type", "") == "Established" && c.value("status", "") == "True") return true;
    }
    return false;
}

// The kinds a CRD defines, as resource keys, and whether they are namespaced.
std::vector<std::pair<std::string, bool>> crd_kinds(const json& crd)
{
    std::vector<std::pair<std::string, bool>> out;
    const json& spec = crd.contains("spec") ? crd["spec"] : json::object();
    if (!spec.is_object()) return out;
    const std::string group = spec.value("group", "");
    const std::string kind = spec.contains("names") && spec["names"].is_object() ? spec["names"].value("kind", "")
                                                                                   : std::string{};
    const bool namespaced = spec.value("scope", "Namespaced") != "Cluster";
    if (group.empty() || kind.empty() || !spec.contains("versions") || !spec["versions"].is_array()) return out;
    for (const auto& v : spec["versions"]) {
        if (v.is_object() && v.contains("name") && v["name"].is_string()) {
            out.emplace_back(resource_key(group + "/" + v["name"].get<std::string>(), kind), namespaced);
        }
    }
    return out;
}

using Parts = std::vector<std::string>;

std::string group_of(const std::string& api_version)
{
    const auto slash = api_version.find('/');
    return slash == std::string::npos ? std::string() : api_version.substr(0, slash);
}

// {apiVersion, kind, name} below the top level, the same object at another
// version of the same group.
bool same_reference(const json& a, const json& b)
{
    auto text = [](const json& o, const char* key) -> std::string {
        const auto it = o.find(key);
        return it != o.end() && it->is_string() ? it->get<std::string>() : std::string{};
    };
    const std::string av = text(a, "apiVersion");
    const std::string bv = text(b, "apiVersion");
    if (av.empty() || bv.empty() || av == bv || group_of(av) != group_of(bv)) return false;
    if (text(a, "kind").empty() || text(a, "name").empty()) return false;
    if (text(a, "kind") != text(b, "kind") || text(a, "name") != text(b, "name")) return false;
    json a2 = a;
    json b2 = b;
    a2.erase("apiVersion");
    b2.erase("apiVersion");
    return a2 == b2;
}

void collect_drift(const json& want, const json& live, Parts& parts, std::vector<Parts>& out, std::size_t limit)
{
    if (out.size() >= limit || want == live) return;
    if (want.is_object() && live.is_object()) {
        if (!parts.empty() && same_reference(want, live)) return;
        for (const auto& [key, value] : want.items()) {
            if (out.size() >= limit) return;
            parts.push_back(key);
            const auto found = live.find(key);
            if (found == live.end()) {
                out.push_back(parts);
            } else {
                collect_drift(value, *found, parts, out, limit);
            }
            parts.pop_back();
        }
        for (const auto& [key, value] : live.items()) {
            if (out.size() >= limit) return;
            (void)value;
            if (want.contains(key)) continue;
            parts.push_back(key);
            out.push_back(parts);
            parts.pop_back();
        }
        return;
    }
    // Scalars of another value, lists (one path for the list), or another type.
    out.push_back(parts);
}

std::string render_path(const Parts& parts)
{
    std::string text;
    for (const auto& p : parts) {
        if (p.find_first_of("./") != std::string::npos) {
            text += "[" + p + "]";
        } else {
            text += "." + p;
        }
    }
    return text.empty() ? "." : text;
}

std::vector<std::string> owners_of(const json& live, const Parts& parts)
{
    std::vector<std::string> owners;
    const json::json_pointer managed("/metadata/managedFields");
    if (!live.contains(managed) || !live.at(managed).is_array()) return owners;
    for (const auto& entry : live.at(managed)) {
        if (!entry.is_object()) continue;
        const std::string manager = entry.value("manager", "");
        if (manager.empty() || manager == k_kube_field_manager) continue;
        const json* node = entry.contains("fieldsV1") ? &entry["fieldsV1"] : nullptr;
        bool owns = node != nullptr;
        for (const auto& part : parts) {
            if (node == nullptr || !node->is_object()) {
                owns = false;
                break;
            }
            const auto next = node->find("f:" + part);
            if (next == node->end()) {
                owns = false;
                break;
            }
            node = &*next;
        }
        if (owns && std::find(owners.begin(), owners.end(), manager) == owners.end()) owners.push_back(manager);
    }
    return owners;
}

} // namespace

json comparable_view(const json& object)
{
    json out = object;
    if (!out.is_object()) return out;
    out.erase("status");
    const auto meta = out.find("metadata");
    if (meta != out.end() && meta->is_object()) {
        for (const char* field : {"managedFields", "resourceVersion", "generation", "uid", "creationTimestamp",
                                  "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"}) {
            meta->erase(field);
        }
        const auto annotations = meta->find("annotations");
        if (annotations != meta->end() && annotations->is_object()) {
            annotations->erase(k_kube_revision_annotation);
            if (annotations->empty()) meta->erase("annotations");
        }
    }
    return out;
}

std::vector<DriftedField> drifted_fields(const json& server_view, const json& live, std::size_t limit)
{
    std::vector<Parts> paths;
    Parts parts;
    collect_drift(comparable_view(server_view), comparable_view(live), parts, paths, limit);
    std::vector<DriftedField> out;
    out.reserve(paths.size());
    for (const auto& p : paths) {
        out.push_back(DriftedField{render_path(p), owners_of(live, p)});
    }
    return out;
}

namespace {

bool cainjector_annotated(const json& meta)
{
    const auto annotations = meta.find("annotations");
    if (annotations == meta.end() || !annotations->is_object()) return false;
    for (const char* key : {"cert-manager.io/inject-ca-from", "cert-manager.io/inject-ca-from-secret",
                            "cert-manager.io/inject-apiserver-ca"}) {
        if (annotations->contains(key)) return true;
    }
    return false;
}

// The CA bundle fields cert-manager's cainjector writes (its CRD, webhook
// configuration and APIService injectors).
void drop_injected_ca(json& body)
{
    const std::string kind = body.value("kind", "");
    auto erase_at = [](json& node, std::initializer_list<const char*> path) {
        json* at = &node;
        for (auto it = path.begin(); it != path.end(); ++it) {
            if (!at->is_object()) return;
            if (std::next(it) == path.end()) {
                at->erase(*it);
                return;
            }
            const auto next = at->find(*it);
            if (next == at->end()) return;
            at = &*next;
        }
    };
    if (kind == "CustomResourceDefinition") {
        erase_at(body, {"spec", "conversion", "webhook", "clientConfig", "caBundle"});
    } else if (kind == "ValidatingWebhookConfiguration" || kind == "MutatingWebhookConfiguration") {
        if (body.contains("webhooks") && body["webhooks"].is_array()) {
            for (auto& hook : body["webhooks"]) erase_at(hook, {"clientConfig", "caBundle"});
        }
    } else if (kind == "APIService") {
        erase_at(body, {"spec", "caBundle"});
    }
}

} // namespace

json prepared_body(const KubeObject& object, const std::string& revision, const std::string& instance,
                   const std::string& default_namespace, bool namespaced, bool has_status)
{
    json body = object.body;
    json& meta = body["metadata"];
    if (!meta.is_object()) meta = json::object();
    if (namespaced) {
        if (!meta.contains("namespace") || !meta["namespace"].is_string() ||
            meta["namespace"].get_ref<const std::string&>().empty()) {
            meta["namespace"] = default_namespace;
        }
    } else {
        meta.erase("namespace");
    }
    if (!meta.contains("labels") || !meta["labels"].is_object()) meta["labels"] = json::object();
    meta["labels"][k_kube_instance_label] = instance;
    if (!meta.contains("annotations") || !meta["annotations"].is_object()) meta["annotations"] = json::object();
    meta["annotations"][k_kube_source_annotation] = object.source.file + ":" + std::to_string(object.source.line);
    if (!revision.empty()) meta["annotations"][k_kube_revision_annotation] = revision;
    // Server-owned fields never belong in an apply.
    for (const char* field : {"resourceVersion", "uid", "creationTimestamp", "generation", "managedFields",
                              "deletionTimestamp", "selfLink"}) {
        meta.erase(field);
    }
    if (has_status) body.erase("status");
    if (cainjector_annotated(meta)) drop_injected_ca(body);
    return body;
}

json to_json(const KubeVerdict& verdict)
{
    json out{{"apiVersion", verdict.ref.api_version},
             {"kind", verdict.ref.kind},
             {"name", verdict.ref.name},
             {"state", to_string(verdict.state)},
             {"message", verdict.message}};
    if (!verdict.ref.namespace_.empty()) out["namespace"] = verdict.ref.namespace_;
    if (!verdict.source.empty()) out["source"] = verdict.source;
    return out;
}

KubePlan plan_kube(const KubePlanInput& input)
{
    KubePlan plan;

    // Kinds defined by CRDs of this revision, and whether each CRD is Established.
    std::map<std::string, std::pair<std::string, bool>> crd_defined;  // key -> (crd name, namespaced)
    std::map<std::string, bool> crd_ready;                            // crd name -> established
    for (const auto& object : input.desired) {
        if (object.kind != "CustomResourceDefinition" || !object.api_version.starts_with("apiextensions.k8s.io/")) {
            continue;
        }
        const ObjectRef ref{object.api_version, object.kind, "", object.name};
        const auto live = input.live.find(ref);
        crd_ready[object.name] = live != input.live.end() && crd_established(live->second) && !being_deleted(live->second);
        for (const auto& [key, namespaced] : crd_kinds(object.body)) {
            crd_defined[key] = {object.name, namespaced};
        }
    }

    struct Pending {
        int group;
        std::size_t order;
        KubeStep step;
    };
    std::vector<Pending> applies;
    std::set<ObjectRef> desired_refs;
    std::set<std::string> desired_namespaces;  // namespaces holding desired objects
    std::set<std::string> desired_kinds;

    std::vector<std::pair<ObjectRef, std::string>> refused;  // objects the server refuses, with their source
    std::vector<std::size_t> held;                           // verdicts of objects an apply was planned for

    for (std::size_t i = 0; i < input.desired.size(); ++i) {
        const KubeObject& object = input.desired[i];
        const std::string key = resource_key(object.api_version, object.kind);
        const std::string source = object.source.file + ":" + std::to_string(object.source.line);
        desired_kinds.insert(key);
        const auto served = input.resources.find(key);
        const auto defined = crd_defined.find(key);
        const auto kind_problem = input.kind_problems.find(key);
        bool namespaced = true;
        bool has_status = false;
        std::string waiting_for;
        if (served != input.resources.end()) {
            namespaced = served->second.namespaced;
            has_status = served->second.has_status;
        } else if (defined != crd_defined.end()) {
            namespaced = defined->second.second;
        } else {
            ObjectRef ref{object.api_version, object.kind,
                          object.namespace_.empty() ? input.default_namespace : object.namespace_, object.name};
            desired_refs.insert(ref);
            plan.inventory.push_back(ref);
            const bool waiting = kind_problem != input.kind_problems.end() &&
                                 kind_problem->second.kind == KubeProblemKind::waiting;
            std::string message =
                kind_problem != input.kind_problems.end()
                    ? kind_problem->second.message
                    : "the management cluster does not serve kind " + object.kind + " in apiVersion " +
                          object.api_version +
                          " (is its provider installed, e.g. by `clusterctl init`? is the apiVersion right?)";
            plan.verdicts.push_back(KubeVerdict{
                ref, waiting ? KubeObjectState::waiting : KubeObjectState::error, std::move(message), source});
            continue;
        }
        if (defined != crd_defined.end() && !crd_ready[defined->second.first]) {
            waiting_for = defined->second.first;
        }

        json body = prepared_body(object, input.revision, input.instance, input.default_namespace, namespaced,
                                  has_status);
        ObjectRef ref{object.api_version, object.kind,
                      namespaced ? body["metadata"].value("namespace", "") : std::string{}, object.name};
        desired_refs.insert(ref);
        plan.inventory.push_back(ref);
        if (namespaced) desired_namespaces.insert(ref.namespace_);

        if (!waiting_for.empty()) {
            plan.verdicts.push_back(KubeVerdict{
                ref, KubeObjectState::waiting,
                "waiting for CustomResourceDefinition " + waiting_for + " to be Established", source});
            continue;
        }
        if (kind_problem != input.kind_problems.end()) {
            plan.verdicts.push_back(KubeVerdict{ref,
                                                kind_problem->second.kind == KubeProblemKind::waiting
                                                    ? KubeObjectState::waiting
                                                    : KubeObjectState::error,
                                                kind_problem->second.message, source});
            continue;
        }
        if (const auto problem = input.object_problems.find(ref); problem != input.object_problems.end()) {
            KubeObjectState state = KubeObjectState::error;
            std::string message = problem->second.message;
            if (problem->second.kind == KubeProblemKind::waiting) {
                state = KubeObjectState::waiting;
            } else if (problem->second.kind == KubeProblemKind::invalid) {
                message = "refused by the API server: " + message;
                refused.emplace_back(ref, source);
            }
            plan.verdicts.push_back(KubeVerdict{ref, state, std::move(message), source});
            continue;
        }

        const auto live = input.live.find(ref);
        if (live == input.live.end()) {
            applies.push_back(Pending{apply_group(ref), i, KubeStep{KubeStepVerb::apply, ref, body, "not in the cluster: create"}});
            held.push_back(plan.verdicts.size());
            plan.verdicts.push_back(KubeVerdict{ref, KubeObjectState::applying, "not in the cluster: create", source});
            continue;
        }
        if (being_deleted(live->second)) {
            const std::string finalizers = finalizers_text(live->second);
            plan.verdicts.push_back(KubeVerdict{
                ref, KubeObjectState::waiting,
                "being deleted in the cluster" + (finalizers.empty() ? std::string{} : " (finalizers: " + finalizers + ")") +
                    "; created again once it is gone",
                source});
            continue;
        }
        const auto view = input.server_view.find(ref);
        if (view == input.server_view.end()) {
            // Nothing to compare with (the observer sends a dry run for every
            // object in Git that it can): apply, the server decides.
            applies.push_back(Pending{apply_group(ref), i,
                                      KubeStep{KubeStepVerb::apply, ref, body, "not compared with the cluster: apply"}});
            held.push_back(plan.verdicts.size());
            plan.verdicts.push_back(
                KubeVerdict{ref, KubeObjectState::applying, "not compared with the cluster: apply", source});
            continue;
        }
        const auto drift = drifted_fields(view->second, live->second);
        if (drift.empty()) {
            plan.verdicts.push_back(KubeVerdict{ref, KubeObjectState::in_sync, "", source});
            continue;
        }
        bool changed_by_others = false;
        std::string fields;
        for (const auto& d : drift) {
            if (!fields.empty()) fields += ", ";
            fields += d.path;
            if (!d.owners.empty()) {
                changed_by_others = true;
                fields += " (now owned by ";
                for (std::size_t o = 0; o < d.owners.size(); ++o) fields += (o ? ", " : "") + d.owners[o];
                fields += ")";
            }
        }
        const KubeObjectState state = changed_by_others ? KubeObjectState::drifted : KubeObjectState::applying;
        const std::string reason = changed_by_others ? "changed in the cluster, applied again: " + fields
                                                     : "differs from Git: " + fields;
        applies.push_back(Pending{apply_group(ref), i, KubeStep{KubeStepVerb::apply, ref, body, reason}});
        held.push_back(plan.verdicts.size());
        plan.verdicts.push_back(KubeVerdict{ref, state, reason, source});
    }

    // An object the server refuses holds the whole revision, as an invalid
    // YAML file does: nothing of it is applied or pruned until Git is fixed.
    std::string hold;
    if (!refused.empty()) {
        hold = "held: the API server refuses " + describe(refused.front().first) + " (" + refused.front().second + ")";
        if (refused.size() > 1) hold += " and " + std::to_string(refused.size() - 1) + " more";
        hold += " of this revision; nothing of it is applied until Git is fixed";
        applies.clear();
        for (const auto index : held) {
            plan.verdicts[index].state = KubeObjectState::waiting;
            plan.verdicts[index].message = hold + " (would apply: " + plan.verdicts[index].message + ")";
        }
    }

    std::stable_sort(applies.begin(), applies.end(), [](const Pending& a, const Pending& b) {
        return a.group != b.group ? a.group < b.group : a.order < b.order;
    });
    for (auto& pending : applies) plan.steps.push_back(std::move(pending.step));

    // Prune candidates: live objects of this instance, and inventory entries
    // still live, that Git no longer has.
    std::set<ObjectRef> candidates;
    for (const auto& [ref, object] : input.live) {
        if (desired_refs.contains(ref)) continue;
        const json::json_pointer label("/metadata/labels");
        const bool ours = object.contains(label) && object.at(label).is_object() &&
                          object.at(label).value(k_kube_instance_label, "") == input.instance;
        if (ours) candidates.insert(ref);
    }
    for (const auto& ref : input.inventory) {
        if (!desired_refs.contains(ref) && input.live.contains(ref)) candidates.insert(ref);
    }

    // Applied before, gone from Git, of a kind that cannot be read now: kept
    // in the inventory, so that it is pruned once the kind can be read again.
    for (const auto& ref : input.inventory) {
        if (desired_refs.contains(ref) || input.live.contains(ref)) continue;
        const auto problem = input.kind_problems.find(resource_key(ref.api_version, ref.kind));
        if (problem == input.kind_problems.end()) continue;
        plan.inventory.push_back(ref);
        plan.verdicts.push_back(KubeVerdict{ref, KubeObjectState::error,
                                            "removed from Git; not pruned while its kind cannot be read: " +
                                                problem->second.message,
                                            ""});
    }

    int phase = 4;  // the lowest phase with a live candidate, when pruning
    std::vector<ObjectRef> prunable;
    for (const auto& ref : candidates) {
        const json& live = input.live.at(ref);
        const json::json_pointer annotation("/metadata/annotations");
        const bool opted_out = live.contains(annotation) && live.at(annotation).is_object() &&
                               live.at(annotation).value(k_kube_prune_annotation, "") == "disabled";
        if (opted_out) {
            plan.verdicts.push_back(KubeVerdict{ref, KubeObjectState::kept,
                                                "removed from Git; annotated metalsync.dev/prune: disabled, left in place",
                                                string_at(live, json::json_pointer("/metadata/annotations/metalsync.dev~1source"))});
            continue;
        }
        if (!input.prune) {
            plan.verdicts.push_back(KubeVerdict{ref, KubeObjectState::orphaned,
                                                "removed from Git; prune is off in the Policy, left in place", ""});
            continue;
        }
        if (is_namespace(ref) && desired_namespaces.contains(ref.name)) {
            plan.verdicts.push_back(KubeVerdict{ref, KubeObjectState::kept,
                                                "removed from Git but objects in Git still live in it: not deleted", ""});
            continue;
        }
        if (is_crd(ref)) {
            bool in_use = false;
            for (const auto& [key, namespaced] : crd_kinds(live)) {
                (void)namespaced;
                in_use = in_use || desired_kinds.contains(key);
            }
            if (in_use) {
                plan.verdicts.push_back(KubeVerdict{ref, KubeObjectState::kept,
                                                    "removed from Git but objects of its kinds are still in Git: not deleted", ""});
                continue;
            }
        }
        if (!hold.empty()) {
            plan.verdicts.push_back(KubeVerdict{ref, KubeObjectState::pruning, "removed from Git; " + hold, ""});
            continue;
        }
        prunable.push_back(ref);
        phase = std::min(phase, prune_phase(ref));
    }

    static const char* const k_phase_wait[] = {"", "waiting for the pruned Clusters to be deleted first",
                                               "waiting for the other pruned objects to be deleted first",
                                               "waiting for the other pruned objects to be deleted first"};
    for (const auto& ref : prunable) {
        const json& live = input.live.at(ref);
        if (being_deleted(live)) {
            const std::string finalizers = finalizers_text(live);
            plan.verdicts.push_back(KubeVerdict{
                ref, KubeObjectState::deleting,
                "removed from Git; delete requested" +
                    (finalizers.empty() ? std::string{} : ", waiting for finalizers: " + finalizers),
                ""});
            continue;
        }
        const int own = prune_phase(ref);
        if (own > phase) {
            plan.verdicts.push_back(KubeVerdict{ref, KubeObjectState::pruning,
                                                std::string("removed from Git; ") + k_phase_wait[own], ""});
            continue;
        }
        plan.steps.push_back(KubeStep{KubeStepVerb::remove, ref, json(), "removed from Git: delete"});
        plan.verdicts.push_back(KubeVerdict{ref, KubeObjectState::pruning, "removed from Git: delete", ""});
    }
    return plan;
}

} // namespace metalsync
