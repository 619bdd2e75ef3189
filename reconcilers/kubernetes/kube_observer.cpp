#include "reconcilers/kubernetes/kube_observer.hpp"

#include <set>

#include <spdlog/spdlog.h>

namespace metalsync {

using nlohmann::json;

namespace {

bool fatal_error(const ApiError& error) { return error.http_status == 0 || error.http_status == 401; }

std::string crd_group_of(const std::string& api_version)
{
    const auto slash = api_version.find('/');
    return slash == std::string::npos ? std::string() : api_version.substr(0, slash);
}

std::string version_of(const std::string& api_version)
{
    const auto slash = api_version.find('/');
    return slash == std::string::npos ? api_version : api_version.substr(slash + 1);
}

bool is_crd_object(const KubeObject& object)
{
    return object.kind == "CustomResourceDefinition" && object.api_version.starts_with("apiextensions.k8s.io/");
}

bool crd_defines(const json& crd, const std::string& api_version, const std::string& kind)
{
    const json spec = crd.value("spec", json::object());
    if (!spec.is_object() || spec.value("group", "") != crd_group_of(api_version)) return false;
    const json names = spec.value("names", json::object());
    return names.is_object() && names.value("kind", "") == kind;
}

// "clusters.cluster.x-k8s.io" for messages about a kind.
std::string resource_name(const ResourceInfo& info)
{
    const std::string group = crd_group_of(info.api_version);
    return group.empty() ? info.resource : info.resource + "." + group;
}

KubeProblem list_problem(const ResourceInfo& info, const ApiError& error)
{
    if (error.http_status == 403) {
        return KubeProblem{KubeProblemKind::failed,
                           "permission denied: metalsync's user may not list " + resource_name(info) +
                               " in any namespace (RBAC: grant get, list, patch and delete on it): " + error.message};
    }
    return KubeProblem{KubeProblemKind::failed,
                       "cannot list " + resource_name(info) + " (HTTP " + std::to_string(error.http_status) +
                           (error.retryable ? ", retried next pass" : "") + "): " + error.message};
}

// The cache key of the answer a dry run gave: the Git body (without the
// revision annotation) and what of the live object can change the answer.
std::string in_sync_key(const json& body, const json& live, bool uses_generation)
{
    json git = comparable_view(body);
    std::string key = git.dump();
    const json meta = live.value("metadata", json::object());
    if (uses_generation && meta.contains("generation")) {
        json decisive = json::object();
        for (const char* field : {"generation", "labels", "annotations", "ownerReferences", "finalizers"}) {
            if (meta.contains(field)) decisive[field] = meta[field];
        }
        key += "|" + decisive.dump();
    } else {
        key += "|rv=" + meta.value("resourceVersion", "");
    }
    return key;
}

// The server refuses the object as Git has it. Server-side apply reports an
// undeclared field or a wrong type from structured-merge-diff's typed
// conversion as a 500 with no reason ("failed to create typed patch object
// (...): .spec.x: field not declared in schema"; kubernetes/kubernetes#122480,
// staging/src/k8s.io/apiserver/pkg/endpoints/handlers/fieldmanager), whatever
// fieldValidation says: that is Git's content, not a server fault.
bool refused_content(const ApiError& error)
{
    if (error.http_status == 400 || error.http_status == 422) return true;
    return error.http_status == 500 && error.message.find("failed to create typed patch object") != std::string::npos;
}

// A 404 for a dry run in a namespace that does not exist yet.
bool namespace_missing(const ApiError& error, const std::string& namespace_)
{
    return error.http_status == 404 && !namespace_.empty() &&
           error.message.find("namespaces \"" + namespace_ + "\" not found") != std::string::npos;
}

} // namespace

std::optional<ResourceInfo> resource_from_crd(const json& crd, const std::string& api_version,
                                              const std::string& kind)
{
    if (!crd.is_object() || !crd_defines(crd, api_version, kind)) return std::nullopt;
    const json meta = crd.value("metadata", json::object());
    if (meta.is_object() && meta.contains("deletionTimestamp") && !meta["deletionTimestamp"].is_null()) {
        return std::nullopt;
    }
    bool established = false;
    const json conditions = crd.value("status", json::object()).value("conditions", json::array());
    for (const auto& c : conditions) {
        if (c.is_object() && c.value("type", "") == "Established" && c.value("status", "") == "True") {
            established = true;
        }
    }
    if (!established) return std::nullopt;
    const json& spec = crd["spec"];
    const json versions = spec.value("versions", json::array());
    for (const auto& v : versions) {
        if (!v.is_object() || v.value("name", "") != version_of(api_version) || !v.value("served", false)) continue;
        ResourceInfo info;
        info.api_version = api_version;
        info.kind = kind;
        info.resource = spec.value("names", json::object()).value("plural", "");
        info.namespaced = spec.value("scope", "Namespaced") != "Cluster";
        info.has_status = v.contains("subresources") && v["subresources"].is_object() &&
                          v["subresources"].contains("status");
        if (info.resource.empty()) return std::nullopt;
        return info;
    }
    return std::nullopt;
}

void KubeObserver::forget()
{
    m_in_sync.clear();
    m_first_miss.clear();
}

void KubeObserver::remember_applied(const ObjectRef& ref, const json& body, const json& stored,
                                    const std::map<std::string, ResourceInfo>& resources)
{
    const auto info = resources.find(resource_key(ref.api_version, ref.kind));
    const bool uses_generation = info != resources.end() && info->second.has_status;
    m_in_sync[ref] = in_sync_key(body, stored, uses_generation);
}

KubeObservation KubeObserver::observe(KubeClient& client, const KubeObserveInput& input)
{
    KubeObservation out;
    const auto now = std::chrono::steady_clock::now();

    // 1. Kinds: in Git, and applied before.
    std::set<std::pair<std::string, std::string>> kinds;
    for (const auto& o : input.desired) kinds.insert({o.api_version, o.kind});
    for (const auto& r : input.inventory) kinds.insert({r.api_version, r.kind});
    std::vector<std::pair<std::string, std::string>> missing;
    for (const auto& [api_version, kind] : kinds) {
        const std::string key = resource_key(api_version, kind);
        auto info = client.resource_for(api_version, kind);
        if (info) {
            out.resources[key] = *info;
            m_first_miss.erase(key);
            continue;
        }
        if (fatal_error(info.error())) {
            out.fatal = info.error();
            return out;
        }
        if (info.error().http_status == 404) {
            missing.emplace_back(api_version, kind);
        } else {
            out.kind_problems[key] = KubeProblem{KubeProblemKind::failed,
                                                 "discovery of " + api_version + " failed: " + info.error().describe()};
        }
    }

    // 2. A kind discovery does not list yet may be served already: a CRD in
    // Git that is Established defines it (the real server serves a CRD's
    // resources once Established; its discovery document follows later).
    std::map<ObjectRef, json> crds_read;
    for (const auto& [api_version, kind] : missing) {
        const std::string key = resource_key(api_version, kind);
        std::optional<ResourceInfo> learned;
        for (const auto& o : input.desired) {
            if (!is_crd_object(o) || !crd_defines(o.body, api_version, kind)) continue;
            const ObjectRef ref{o.api_version, o.kind, "", o.name};
            auto crd = client.get(ref);
            if (!crd) {
                if (fatal_error(crd.error())) {
                    out.fatal = crd.error();
                    return out;
                }
                continue;
            }
            if (*crd) {
                learned = resource_from_crd(**crd, api_version, kind);
                crds_read[ref] = **crd;
            }
            break;
        }
        if (learned) {
            spdlog::debug("kubernetes: {} {} is served by its Established CRD before discovery lists it", api_version,
                          kind);
            client.learn(*learned);
            out.resources[key] = *learned;
            m_first_miss.erase(key);
            continue;
        }
        const auto first = m_first_miss.try_emplace(key, now).first->second;
        if (now - first < k_discovery_grace) {
            out.kind_problems[key] = KubeProblem{
                KubeProblemKind::waiting,
                "kind " + kind + " in apiVersion " + api_version +
                    " is not served yet (discovery can lag a CRD installed a moment ago; asking again until " +
                    std::to_string(k_discovery_grace.count()) + " s have passed)"};
        }
        // Past the grace, the planner reports it as not served (an error).
    }

    // 3. Live objects: those of this instance, kind by kind.
    const std::string selector = std::string(k_kube_instance_label) + "=" + input.instance;
    for (const auto& [key, info] : out.resources) {
        auto items = client.list(info.api_version, info.kind, "", selector);
        if (!items) {
            if (fatal_error(items.error())) {
                out.fatal = items.error();
                return out;
            }
            out.kind_problems[key] = list_problem(info, items.error());
            continue;
        }
        for (auto& item : *items) {
            item["apiVersion"] = info.api_version;  // list items may omit them
            item["kind"] = info.kind;
            ObjectRef ref = ref_of(item);
            if (!info.namespaced) ref.namespace_.clear();
            out.live[ref] = std::move(item);
        }
    }

    // 4. Objects in Git that exist without the label (made by hand, or by another tool).
    struct Candidate {
        const KubeObject* object;
        ObjectRef ref;
        ResourceInfo info;
        json body;
    };
    std::vector<Candidate> candidates;
    for (const auto& o : input.desired) {
        const std::string key = resource_key(o.api_version, o.kind);
        const auto served = out.resources.find(key);
        if (served == out.resources.end() || out.kind_problems.contains(key)) continue;
        const ResourceInfo& info = served->second;
        json body = prepared_body(o, input.revision, input.instance, input.default_namespace, info.namespaced,
                                  info.has_status);
        ObjectRef ref{o.api_version, o.kind,
                      info.namespaced ? body["metadata"].value("namespace", "") : std::string{}, o.name};
        if (!out.live.contains(ref)) {
            if (auto read = crds_read.find(ref); read != crds_read.end()) {
                out.live[ref] = read->second;
            } else {
                auto found = client.get(ref);
                if (!found) {
                    if (fatal_error(found.error())) {
                        out.fatal = found.error();
                        return out;
                    }
                    out.object_problems[ref] = KubeProblem{KubeProblemKind::failed,
                                                           "cannot read it: " + found.error().describe()};
                    continue;
                }
                if (*found) {
                    (**found)["apiVersion"] = o.api_version;
                    (**found)["kind"] = o.kind;
                    out.live[ref] = std::move(**found);
                }
            }
        }
        candidates.push_back(Candidate{&o, std::move(ref), info, std::move(body)});
    }

    // 5. Dry runs: CRDs first. A CRD this revision changes must be applied
    // (and Established again) before objects of its kinds are judged against
    // it: their dry runs would meet the old schema.
    std::set<std::string> namespaces_in_git;
    for (const auto& c : candidates) {
        if (c.ref.kind == "Namespace" && c.ref.api_version == "v1") namespaces_in_git.insert(c.ref.name);
    }
    std::map<std::string, std::string> pending_crd_kinds;  // resource key -> CRD name
    auto dry_run = [&](const Candidate& c) -> bool {
        const auto live = out.live.find(c.ref);
        const bool exists = live != out.live.end();
        if (exists) {
            const json meta = live->second.value("metadata", json::object());
            if (meta.contains("deletionTimestamp") && !meta["deletionTimestamp"].is_null()) return true;
        }
        std::string key;
        if (exists) {
            key = in_sync_key(c.body, live->second, c.info.has_status);
            if (const auto known = m_in_sync.find(c.ref); known != m_in_sync.end() && known->second == key) {
                out.server_view[c.ref] = live->second;
                return true;
            }
        }
        ApplyOptions options;
        options.dry_run = true;
        ++out.dry_runs;
        auto answer = client.apply(c.body, k_kube_field_manager, options);
        if (!answer) {
            const ApiError& error = answer.error();
            if (fatal_error(error)) {
                out.fatal = error;
                return false;
            }
            KubeProblem problem{KubeProblemKind::failed, error.describe()};
            if (namespace_missing(error, c.ref.namespace_)) {
                problem = KubeProblem{namespaces_in_git.contains(c.ref.namespace_) ? KubeProblemKind::waiting
                                                                                   : KubeProblemKind::failed,
                                      namespaces_in_git.contains(c.ref.namespace_)
                                          ? "waiting for Namespace " + c.ref.namespace_ + " to be created"
                                          : "namespace " + c.ref.namespace_ +
                                                " does not exist and is not in Git: create it, or add it to Git"};
            } else if (refused_content(error)) {
                problem = KubeProblem{KubeProblemKind::invalid, error.message};
            }
            out.object_problems[c.ref] = std::move(problem);
            m_in_sync.erase(c.ref);
            return true;
        }
        if (!answer->warnings.empty()) out.warnings[c.ref] = std::move(answer->warnings);
        if (exists) {
            if (drifted_fields(answer->object, live->second, 1).empty()) {
                m_in_sync[c.ref] = key;
            } else {
                m_in_sync.erase(c.ref);
            }
        }
        out.server_view[c.ref] = std::move(answer->object);
        return true;
    };
    for (const auto& c : candidates) {
        if (!is_crd_object(*c.object)) continue;
        if (!dry_run(c)) return out;
        const auto view = out.server_view.find(c.ref);
        const auto live = out.live.find(c.ref);
        const bool pending = view == out.server_view.end() || live == out.live.end() ||
                             !drifted_fields(view->second, live->second, 1).empty();
        if (!pending) continue;
        const json spec = c.object->body.value("spec", json::object());
        const std::string group = spec.is_object() ? spec.value("group", "") : std::string{};
        const std::string kind = spec.is_object() ? spec.value("names", json::object()).value("kind", "") : std::string{};
        for (const auto& v : spec.is_object() ? spec.value("versions", json::array()) : json::array()) {
            if (v.is_object() && v.contains("name") && v["name"].is_string()) {
                pending_crd_kinds[resource_key(group + "/" + v["name"].get<std::string>(), kind)] = c.ref.name;
            }
        }
    }
    for (const auto& c : candidates) {
        if (is_crd_object(*c.object)) continue;
        const auto pending = pending_crd_kinds.find(resource_key(c.ref.api_version, c.ref.kind));
        if (pending != pending_crd_kinds.end()) {
            out.object_problems[c.ref] =
                KubeProblem{KubeProblemKind::waiting,
                            "waiting for CustomResourceDefinition " + pending->second + " to be applied first"};
            continue;
        }
        if (!dry_run(c)) return out;
    }
    return out;
}

} // namespace metalsync
