#include "reconcilers/ironic/node_action_runner.hpp"

#include <optional>
#include <set>

#include "reconcilers/http/redact.hpp"
#include "reconcilers/inspection.hpp"

namespace metalsync {

namespace {

using nlohmann::json;

std::string string_param(const json& params, const char* key)
{
    if (params.is_object() && params.contains(key) && params.at(key).is_string()) {
        return params.at(key).get<std::string>();
    }
    return "";
}

// RFC 6901: "~" -> "~0", "/" -> "~1".
std::string pointer_escape(const std::string& key)
{
    std::string out;
    for (char c : key) {
        if (c == '~') {
            out += "~0";
        } else if (c == '/') {
            out += "~1";
        } else {
            out += c;
        }
    }
    return out;
}

ActionResult succeeded(const std::string& summary)
{
    ActionResult result;
    result.ok = true;
    result.summary = redact(summary);
    return result;
}

ActionResult failed(const std::string& error_type, const std::string& message, bool retryable = false)
{
    ActionResult result;
    result.error_type = error_type;
    result.error = redact(message);
    result.retryable = retryable;
    return result;
}

// JSON-Patch "add" ops (add replaces an existing member) writing the
// credentials under the driver's keys.
std::expected<json, ActionResult> secret_ops(const Action& action, const std::string& driver,
                                             const BmcCredentials& credentials)
{
    const auto keys = credential_keys(driver);
    if (keys.username.empty()) {
        return std::unexpected(failed("validation", "node " + action.node + ": driver '" + driver +
                                                        "' takes no credentials metalsync knows how to write"));
    }
    json ops = json::array();
    ops.push_back({{"op", "add"}, {"path", "/driver_info/" + keys.username}, {"value", credentials.username}});
    ops.push_back({{"op", "add"}, {"path", "/driver_info/" + keys.password}, {"value", credentials.password}});
    if (credentials.cipher_suite) {
        if (keys.cipher_suite.empty()) {
            return std::unexpected(failed("validation", "node " + action.node + ": driver '" + driver +
                                                            "' takes no cipher suite (cipherSuite is for IPMI)"));
        }
        ops.push_back(
            {{"op", "add"}, {"path", "/driver_info/" + keys.cipher_suite}, {"value", *credentials.cipher_suite}});
    }
    return ops;
}

json instance_info_ops(const json& instance_info)
{
    json ops = json::array();
    if (instance_info.is_object()) {
        for (const auto& [key, value] : instance_info.items()) {
            ops.push_back({{"op", "add"}, {"path", "/instance_info/" + pointer_escape(key)}, {"value", value}});
        }
    }
    return ops;
}

struct Enrolled {
    ObservedNode node;
    std::string secret_hash; // empty when the node names no credentials
    int ports_created = 0;
    bool existed = false; // found by name after a 409: a previous run's POST had succeeded
};

class ActionRun {
  public:
    ActionRun(IronicClient& client, const CredentialsDirectory& credentials, const std::string& hmac_key,
              const Action& action, const ObservedNode* observed)
        : m_client(client), m_credentials(credentials), m_hmac_key(hmac_key), m_action(action), m_observed(observed)
    {
    }

    ActionResult run()
    {
        switch (m_action.verb) {
        case ActionVerb::create_node:
            return create_node();
        case ActionVerb::adopt_node:
            return adopt_node();
        case ActionVerb::update_node:
            return update_node();
        case ActionVerb::create_port:
            return create_port();
        case ActionVerb::update_port:
            return update_port();
        case ActionVerb::delete_port:
            return delete_port();
        case ActionVerb::manage:
            return provision("manage", {}, "manage requested");
        case ActionVerb::inspect: {
            auto result = provision("inspect", {}, "inspection requested");
            if (result.ok) {
                result.inspected = true;
            }
            return result;
        }
        case ActionVerb::collect_inspection:
            return collect_inspection();
        case ActionVerb::provide:
            return provision("provide", {}, "provide requested (automated cleaning)");
        case ActionVerb::clean:
            return clean();
        // From `deploy failed` too: Ironic's retry target is "active" as well.
        case ActionVerb::deploy:
            return deploy("active", "deploy");
        case ActionVerb::rebuild:
            return deploy("rebuild", "rebuild");
        case ActionVerb::undeploy:
            return provision("deleted", {}, "undeploy requested (cleaning)");
        case ActionVerb::set_maintenance:
            return set_maintenance();
        case ActionVerb::set_power:
            return set_power();
        case ActionVerb::delete_node:
            return delete_node();
        }
        return failed("internal", "node " + m_action.node + ": unknown action verb");
    }

  private:
    [[nodiscard]] std::string ident() const
    {
        return m_observed != nullptr && !m_observed->uuid.empty() ? m_observed->uuid : m_action.node;
    }

    [[nodiscard]] const json& params() const { return m_action.params; }

    ActionResult api_failure(const ApiError& error) const { return action_error(m_action, error); }

    std::expected<BmcCredentials, ActionResult> read_credentials(const std::string& name) const
    {
        auto credentials = m_credentials.read(name);
        if (!credentials) {
            return std::unexpected(failed("credentials", "node " + m_action.node + ": " + credentials.error()));
        }
        return *credentials;
    }

    // POST the node (with its credentials) and its ports; idempotent: a node
    // of that name left by a run that crashed after its POST is taken over
    // when it carries our mark, and only its missing ports are created.
    std::expected<Enrolled, ActionResult> enroll()
    {
        if (!params().contains("node") || !params().at("node").is_object()) {
            return std::unexpected(failed("internal", "node " + m_action.node + ": no node body in the action"));
        }
        json body = params().at("node");
        const std::string driver = string_param(body, "driver");
        const std::string credentials_name = string_param(params(), "credentials");
        Enrolled enrolled;
        std::optional<BmcCredentials> credentials;
        json secrets = json::array();
        if (!credentials_name.empty()) {
            auto read = read_credentials(credentials_name);
            if (!read) {
                return std::unexpected(read.error());
            }
            auto ops = secret_ops(m_action, driver, *read);
            if (!ops) {
                return std::unexpected(ops.error());
            }
            secrets = std::move(*ops);
            const auto keys = credential_keys(driver);
            if (!body.contains("driver_info") || !body["driver_info"].is_object()) {
                body["driver_info"] = json::object();
            }
            body["driver_info"][keys.username] = read->username;
            body["driver_info"][keys.password] = read->password;
            if (read->cipher_suite) {
                body["driver_info"][keys.cipher_suite] = *read->cipher_suite;
            }
            enrolled.secret_hash = secret_hmac(*read, m_hmac_key);
            credentials = std::move(*read);
        }

        auto created = m_client.create_node(body);
        if (created) {
            enrolled.node = std::move(*created);
        } else if (created.error().http_status == 409 && !created.error().node_locked) {
            auto existing = m_client.get_node(m_action.node);
            if (!existing) {
                return std::unexpected(api_failure(created.error()));
            }
            const json want_mark = body.contains("extra") ? body["extra"].value("metalsync", json()) : json();
            const json have_mark = existing->extra.is_object() ? existing->extra.value("metalsync", json()) : json();
            if (want_mark != have_mark) {
                return std::unexpected(failed("conflict", "node " + m_action.node +
                                                              ": Ironic already has a node of this name that "
                                                              "metalsync did not enroll (uuid " +
                                                              existing->uuid + "); left alone"));
            }
            enrolled.node = std::move(*existing);
            enrolled.existed = true;
            if (!secrets.empty()) {
                // The first POST may have carried other credentials.
                if (auto patched = m_client.patch_node(enrolled.node.uuid, secrets); !patched) {
                    return std::unexpected(api_failure(patched.error()));
                }
            }
        } else {
            return std::unexpected(api_failure(created.error()));
        }

        std::set<std::string> have;
        if (enrolled.existed) {
            auto ports = m_client.list_ports();
            if (!ports) {
                return std::unexpected(api_failure(ports.error()));
            }
            for (const auto& port : *ports) {
                if (port.node_uuid == enrolled.node.uuid) {
                    have.insert(port.mac);
                }
            }
        }
        for (const auto& port : params().value("ports", json::array())) {
            const std::string mac = string_param(port, "address");
            if (mac.empty() || have.contains(mac)) {
                continue;
            }
            auto made = m_client.create_port(enrolled.node.uuid, mac, port.value("pxe_enabled", true));
            if (!made) {
                return std::unexpected(api_failure(made.error()));
            }
            ++enrolled.ports_created;
        }
        return enrolled;
    }

    ActionResult create_node()
    {
        auto enrolled = enroll();
        if (!enrolled) {
            return enrolled.error();
        }
        auto result =
            succeeded(std::string(enrolled->existed ? "found enrolled by an earlier run" : "enrolled") + " (uuid " +
                      enrolled->node.uuid + ", " + std::to_string(enrolled->ports_created) + " port(s) created)");
        result.uuid = enrolled->node.uuid;
        if (!enrolled->secret_hash.empty()) {
            result.applied_secret_hash = enrolled->secret_hash;
        }
        result.inspected = false;
        return result;
    }

    // Two stages. Enrolment (params carry the node body): create, write the
    // instance_info the node runs with, and manage; adoption needs a
    // manageable node. Adoption (from manageable, or a retry from `adopt
    // failed`): make sure instance_info is there, then target "adopt", which
    // takes the node to active without touching its disks.
    ActionResult adopt_node()
    {
        const json instance_info = params().value("instance_info", json::object());
        if (params().contains("node")) {
            auto enrolled = enroll();
            if (!enrolled) {
                return enrolled.error();
            }
            const auto ops = instance_info_ops(instance_info);
            if (!ops.empty()) {
                if (auto patched = m_client.patch_node(enrolled->node.uuid, ops); !patched) {
                    return api_failure(patched.error());
                }
            }
            std::string next = "; already " + enrolled->node.provision_state;
            if (enrolled->node.provision_state == "enroll") {
                if (auto managed = m_client.set_provision_state(enrolled->node.uuid, "manage"); !managed) {
                    return api_failure(managed.error());
                }
                next = "; manage requested, adopt follows";
            }
            auto result = succeeded("enrolled again for adoption (uuid " + enrolled->node.uuid + ")" + next);
            result.uuid = enrolled->node.uuid;
            if (!enrolled->secret_hash.empty()) {
                result.applied_secret_hash = enrolled->secret_hash;
            }
            return result;
        }
        const auto ops = instance_info_ops(instance_info);
        if (!ops.empty()) {
            if (auto patched = m_client.patch_node(ident(), ops); !patched) {
                return api_failure(patched.error());
            }
        }
        if (auto adopted = m_client.set_provision_state(ident(), "adopt"); !adopted) {
            return api_failure(adopted.error());
        }
        auto result = succeeded("adopt requested (no redeploy)");
        if (m_observed != nullptr) {
            result.uuid = m_observed->uuid;
        }
        return result;
    }

    ActionResult update_node()
    {
        json patch = params().value("patch", json::array());
        const std::string credentials_name = string_param(params(), "credentials");
        std::string applied;
        if (!credentials_name.empty()) {
            // The driver the node will have after this patch.
            std::string driver = m_observed != nullptr ? m_observed->driver : "";
            for (const auto& op : patch) {
                if (op.value("path", "") == "/driver" && op.contains("value") && op["value"].is_string()) {
                    driver = op["value"].get<std::string>();
                }
            }
            auto credentials = read_credentials(credentials_name);
            if (!credentials) {
                return credentials.error();
            }
            auto ops = secret_ops(m_action, driver, *credentials);
            if (!ops) {
                return ops.error();
            }
            for (auto& op : *ops) {
                patch.push_back(std::move(op));
            }
            applied = secret_hmac(*credentials, m_hmac_key);
        }
        if (patch.empty()) {
            return succeeded("nothing to update");
        }
        if (auto patched = m_client.patch_node(ident(), patch); !patched) {
            return api_failure(patched.error());
        }
        std::string fields;
        for (const auto& op : patch) {
            const std::string path = op.value("path", "");
            if (is_secret_key(path.substr(path.rfind('/') + 1))) {
                continue;
            }
            fields += (fields.empty() ? "" : ", ") + path;
        }
        auto result = succeeded("updated " + (fields.empty() ? std::string("credentials") : fields) +
                                (applied.empty() ? "" : " (credentials written)"));
        if (!applied.empty()) {
            result.applied_secret_hash = applied;
        }
        return result;
    }

    [[nodiscard]] std::string node_uuid() const
    {
        std::string uuid = string_param(params(), "node_uuid");
        if (uuid.empty() && m_observed != nullptr) {
            uuid = m_observed->uuid;
        }
        return uuid;
    }

    ActionResult create_port()
    {
        const std::string mac = string_param(params(), "address");
        auto made = m_client.create_port(node_uuid(), mac, params().value("pxe_enabled", true));
        if (!made) {
            // Already there (a retried action): fine when it is this node's.
            if (made.error().http_status == 409 && m_observed != nullptr) {
                auto ports = m_client.list_ports();
                if (ports) {
                    for (const auto& port : *ports) {
                        if (port.mac == mac && port.node_uuid == node_uuid()) {
                            return succeeded("port " + mac + " already present");
                        }
                    }
                }
            }
            return api_failure(made.error());
        }
        return succeeded("port " + mac + " created");
    }

    // The Ironic client has no port PATCH: the port is deleted and created
    // again with the wanted pxe_enabled. Safe: if the create fails, the next
    // tick sees the port missing and plans create_port.
    ActionResult update_port()
    {
        const std::string uuid = string_param(params(), "uuid");
        const ObservedPort* port = nullptr;
        if (m_observed != nullptr) {
            for (const auto& p : m_observed->ports) {
                if (p.uuid == uuid) {
                    port = &p;
                }
            }
        }
        if (port == nullptr) {
            return failed("not-found", "node " + m_action.node + ": port " + uuid + " is no longer observed", true);
        }
        bool pxe = port->pxe_enabled;
        for (const auto& op : params().value("patch", json::array())) {
            if (op.value("path", "") == "/pxe_enabled" && op.contains("value") && op["value"].is_boolean()) {
                pxe = op["value"].get<bool>();
            }
        }
        if (auto deleted = m_client.delete_port(uuid); !deleted && deleted.error().http_status != 404) {
            return api_failure(deleted.error());
        }
        auto made = m_client.create_port(port->node_uuid, port->mac, pxe, port->physical_network);
        if (!made) {
            return api_failure(made.error());
        }
        return succeeded("port " + port->mac + " pxe_enabled set to " + (pxe ? "true" : "false"));
    }

    ActionResult delete_port()
    {
        const std::string uuid = string_param(params(), "uuid");
        if (auto deleted = m_client.delete_port(uuid); !deleted && deleted.error().http_status != 404) {
            return api_failure(deleted.error());
        }
        return succeeded("port " + string_param(params(), "address") + " deleted");
    }

    ActionResult provision(const std::string& target, const json& extras, const std::string& summary)
    {
        if (auto done = m_client.set_provision_state(ident(), target, extras); !done) {
            return api_failure(done.error());
        }
        return succeeded(summary);
    }

    // One GET: the inventory when Ironic has one (API 1.81+), else the
    // properties inspection wrote, as last observed (the plan was made on an
    // observation of the node back in manageable, after the inspection).
    ActionResult collect_inspection()
    {
        if (m_observed == nullptr) {
            return failed("not-found", "node " + m_action.node + ": not in Ironic, no inspection to read");
        }
        const std::string expect = string_param(params(), "expect");
        auto inventory = m_client.get_inventory(ident());
        std::string source = k_inspection_source_inventory;
        json data;
        std::string why;
        if (inventory) {
            data = std::move(*inventory);
        } else if (inventory.error().http_status == 404 || inventory.error().http_status == 406) {
            // 404: this inspect interface stored no inventory (fake, most
            // out-of-band ones); 406: an Ironic older than 1.81.
            source = k_inspection_source_properties;
            data = inspection_properties(m_observed->properties);
            why = inventory.error().http_status == 404 ? "Ironic holds no inventory for it"
                                                       : "this Ironic has no inventory API";
        } else {
            return api_failure(inventory.error());
        }
        json collected = collected_inspection(source, std::move(data), expect);
        ActionResult result =
            succeeded("inspection result read from " +
                      (source == k_inspection_source_inventory ? std::string("Ironic's inventory")
                                                               : "the node's properties (" + why + ")") +
                      ": " + describe(hardware_from_collected(collected)));
        result.uuid = m_observed->uuid;
        result.inspection = std::move(collected);
        return result;
    }

    ActionResult clean()
    {
        const json steps = params().value("clean_steps", json::array());
        auto result = provision("clean", {{"clean_steps", steps}},
                                "manual cleaning requested (" + std::to_string(steps.size()) + " step(s))");
        if (result.ok) {
            result.clean_steps_hash = string_param(params(), "clean_steps_hash");
        }
        return result;
    }

    ActionResult deploy(const std::string& target, const std::string& what)
    {
        const json instance_info = params().value("instance_info", json::object());
        const auto ops = instance_info_ops(instance_info);
        if (!ops.empty()) {
            if (auto patched = m_client.patch_node(ident(), ops); !patched) {
                return api_failure(patched.error());
            }
        }
        json extras = json::object();
        if (params().contains("configdrive")) {
            extras["configdrive"] = params().at("configdrive");
        }
        std::string image = string_param(instance_info, "image_source");
        auto result = provision(target, extras,
                                what + " requested" + (image.empty() ? "" : " (image " + image + ")") +
                                    (extras.contains("configdrive") ? " with a config drive" : ""));
        if (result.ok) {
            result.config_drive_hash = string_param(params(), "config_drive_hash");
        }
        return result;
    }

    ActionResult set_maintenance()
    {
        const bool on = params().value("maintenance", false);
        const std::string reason = string_param(params(), "reason");
        if (auto done = m_client.set_maintenance(ident(), on, reason); !done) {
            return api_failure(done.error());
        }
        return succeeded(on ? "maintenance on" + (reason.empty() ? "" : " (" + reason + ")") : "maintenance off");
    }

    ActionResult set_power()
    {
        const std::string target = string_param(params(), "target");
        if (auto done = m_client.set_power_state(ident(), target); !done) {
            return api_failure(done.error());
        }
        return succeeded(target + " requested");
    }

    ActionResult delete_node()
    {
        std::string uuid = string_param(params(), "uuid");
        if (uuid.empty()) {
            uuid = ident();
        }
        if (auto deleted = m_client.delete_node(uuid); !deleted) {
            if (deleted.error().http_status == 404) {
                return succeeded("already gone from Ironic");
            }
            return api_failure(deleted.error());
        }
        return succeeded("deleted from Ironic (uuid " + uuid + ")");
    }

    IronicClient& m_client;
    const CredentialsDirectory& m_credentials;
    const std::string& m_hmac_key;
    const Action& m_action;
    const ObservedNode* m_observed;
};

} // namespace

ActionResult action_error(const Action& action, const ApiError& error)
{
    ActionResult result;
    result.retryable = error.retryable;
    const int status = error.http_status;
    if (status == 409) {
        result.error_type = error.node_locked ? "locked" : "conflict";
    } else if (status == 404) {
        result.error_type = "not-found";
    } else if (status == 0 || status == 429 || status >= 500 || status == 401 || status == 403) {
        result.error_type = "unavailable";
    } else if (status >= 400) {
        result.error_type = "validation";
    } else {
        result.error_type = "internal";
    }
    result.error = redact("node " + action.node + ": " + to_string(action.verb) + " failed: " + error.describe());
    return result;
}

NodeActionRunner::NodeActionRunner(IronicClient& client, const CredentialsDirectory& credentials, std::string hmac_key)
    : m_client(client), m_credentials(credentials), m_hmac_key(std::move(hmac_key))
{
}

ActionResult NodeActionRunner::run(const Action& action, const ObservedNode* observed)
{
    return ActionRun(m_client, m_credentials, m_hmac_key, action, observed).run();
}

} // namespace metalsync
