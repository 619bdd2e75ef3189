// `metalsync daemon`: ordered start-up, then the level-triggered loop
// (poll Git, observe Ironic, plan, execute, record), a control socket, and
// signals handled through the loop. One pass of the loop is in
// daemon_loop.cpp, the control socket's commands in daemon_commands.cpp.

#include "daemon/daemon_run.hpp"

#include "daemon/daemon_internal.hpp"

namespace metalsync {

namespace daemon_internal {

namespace {

std::optional<IronicConnection> ironic_connection(const DaemonConfig& cfg, std::string& error)
{
    IronicConnection connection;
    if (!cfg.ironic.endpoint.empty()) {
        connection.endpoint = cfg.ironic.endpoint;
    } else {
        std::optional<std::filesystem::path> file;
        if (!cfg.ironic.clouds_file.empty()) file = cfg.ironic.clouds_file;
        std::string cloud_name = cfg.ironic.cloud;
        if (const char* os_cloud = std::getenv("OS_CLOUD"); os_cloud != nullptr && *os_cloud != '\0') {
            cloud_name = os_cloud;
        }
        if (cloud_name.empty()) {
            error = "no Ironic configured: set ironic.endpoint or ironic.cloud in " + cfg.source_file.string();
            return std::nullopt;
        }
        auto cloud = load_cloud_config(file, cloud_name);
        if (!cloud) {
            error = cloud.error();
            return std::nullopt;
        }
        connection = ironic_connection_from_cloud(*cloud);
    }
    if (!cfg.ironic.ca_file.empty()) connection.tls.ca_file = cfg.ironic.ca_file.string();
    if (!cfg.ironic.client_cert.empty()) connection.tls.client_cert = cfg.ironic.client_cert.string();
    if (!cfg.ironic.client_key.empty()) connection.tls.client_key = cfg.ironic.client_key.string();
    if (cfg.ironic.insecure) connection.tls.insecure = true;
    connection.timeout = cfg.ironic.timeout;
    return connection;
}

KubeWorkerSettings kube_settings(const DaemonConfig& cfg)
{
    KubeWorkerSettings s;
    s.kubeconfig = cfg.kubernetes.kubeconfig;
    s.context = cfg.kubernetes.context;
    s.default_namespace = cfg.kubernetes.namespace_;
    s.instance = cfg.instance;
    s.qps = cfg.limits.kubernetes_qps;
    s.resync = cfg.kubernetes.resync_interval;
    s.timeout = cfg.kubernetes.timeout;
    s.install_provider = cfg.provider.enabled;
    return s;
}

} // namespace

bool Daemon::acquire_lock()
{
    auto path = m_config.state_dir / "metalsync.lock";
    m_lock_fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (m_lock_fd < 0) {
        spdlog::critical("cannot open {}: {}", path.string(), std::strerror(errno));
        return false;
    }
    if (flock(m_lock_fd, LOCK_EX | LOCK_NB) != 0) {
        char buf[32] = {};
        auto n = ::pread(m_lock_fd, buf, sizeof buf - 1, 0);
        std::string pid = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "?";
        while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
        spdlog::critical("another metalsync (pid {}) is running with state directory {}", pid,
                         m_config.state_dir.string());
        return false;
    }
    auto pid = std::to_string(::getpid()) + "\n";
    (void)::ftruncate(m_lock_fd, 0);
    (void)::pwrite(m_lock_fd, pid.data(), pid.size(), 0);
    return true;
}

void Daemon::signal_thread_main(sigset_t set)
{
    while (true) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) {
            continue;
        }
        if (sig == SIGHUP) {
            m_reload = true;
            request_wakeup();
        } else if (sig == SIGUSR2) {
            return;  // our own wake-up to end this thread
        } else {
            m_shutdown = true;
            request_wakeup();
        }
    }
}

int Daemon::run()
{
    std::error_code ec;
    std::filesystem::create_directories(m_config.state_dir, ec);
    if (ec) {
        spdlog::critical("cannot create state directory {}: {}", m_config.state_dir.string(), ec.message());
        return 1;
    }
    if (!acquire_lock()) {
        return 1;
    }
    auto store = Store::open(m_config.state_dir / "metalsync.db");
    if (!store) {
        spdlog::critical("{}", store.error().message);
        return 1;
    }
    m_store.emplace(std::move(*store));
    auto reader = StoreReader::open(m_config.state_dir / "metalsync.db");
    if (!reader) {
        spdlog::critical("{}", reader.error().message);
        return 1;
    }
    m_reader.emplace(std::move(*reader));
    if (auto statuses = m_store->list_node_statuses()) {
        for (auto& s : *statuses) {
            m_status[s.name] = s;
        }
    }
    if (auto inspections = m_store->list_inspections()) {
        for (const auto& record : *inspections) {
            m_inspections[record.name] = inspection_memory(record);
        }
    }
    // After a crash: actions that were pending or running are not redone
    // blindly. Each tick re-observes Ironic first and plans again from what
    // it sees, so a step that reached Ironic is not repeated; the first
    // observation also settles how each interrupted entry ended
    // (resolve_interrupted), with its event, commit and author.
    if (auto unfinished = m_store->journal_unfinished(); unfinished && !unfinished->empty()) {
        m_interrupted = std::move(*unfinished);
        spdlog::warn("journal: {} actions were interrupted by the last stop; asking Ironic how each ended before acting",
                     m_interrupted.size());
    }
    // The provision states last seen, so that a node's "since" survives a restart.
    if (auto last = m_store->load_observed(); last) {
        for (const auto& [name, node] : last->nodes) m_restored_states[name] = node.provision_state;
    }
    std::string error;
    m_ironic_connection = ironic_connection(m_config, error);
    if (!m_ironic_connection) {
        spdlog::critical("{}", error);
        return 1;
    }
    // One budget of ironicQPS for every request to Ironic: the observer's and
    // every worker's (their clients are made from copies of this connection).
    m_ironic_connection->rate_limiter = std::make_shared<RateLimiter>(effective_limits().ironic_qps);
    m_observer.emplace(*m_ironic_connection);
    if (auto version = m_observer->negotiate(); !version) {
        if (version.error().http_status == 0 || version.error().retryable) {
            spdlog::warn("ironic: {} (will keep trying)", version.error().describe());
        } else {
            spdlog::critical("ironic: {}", version.error().describe());
            return 1;
        }
    } else {
        spdlog::info("ironic: {} speaks API {}", m_observer->endpoint(), version->str());
    }
    m_credentials.emplace(m_config.credentials_dir, m_config.credentials_fallback_dir);
    auto key = load_or_create_hmac_key(m_config.state_dir / "credentials.hmac-key");
    if (!key) {
        spdlog::critical("{}", key.error());
        return 1;
    }
    m_hmac_key = *key;

    if (!m_config.has_git) {
        spdlog::critical("{}: no git remote configured (git.url)", m_config.source_file.string());
        return 1;
    }
    m_git.emplace(m_config.git);
    m_intake.emplace(*m_git, *m_store, &m_store_mutex);
    m_intake->restore();
    if (auto current = m_intake->current()) {
        // The revision in force survives a restart, even before the next poll succeeds.
        std::lock_guard lock(m_view_mutex);
        m_view.revision = current->revision;
        m_view.revision_author = m_intake->current_commit().author_name;
        m_view.revision_summary = m_intake->current_commit().summary;
    }

    // The Kubernetes half runs on its own thread; it starts from the
    // inventory of the last pass, so removals made while down are pruned.
    std::vector<ObjectRef> inventory;
    if (auto last = m_store->last_inventory(); last && *last) {
        for (const auto& row : (*last)->rows) {
            inventory.push_back(ObjectRef{row.api_version, row.kind, row.namespace_, row.name});
        }
    }
    m_kube = std::make_unique<KubeWorker>(
        kube_settings(m_config), std::move(inventory),
        [this](const Event& e) {
            std::lock_guard lock(m_store_mutex);
            checked(m_store->add_event(e), "add_event");
        },
        [this](const std::string& revision, const std::vector<ObjectRef>& refs) {
            std::vector<KubeInventoryRow> rows;
            for (const auto& r : refs) rows.push_back(KubeInventoryRow{r.api_version, r.kind, r.namespace_, r.name});
            std::lock_guard lock(m_store_mutex);
            if (auto saved = m_store->save_inventory(revision, rows); !saved) {
                spdlog::warn("kubernetes: inventory not saved: {}", saved.error().message);
            }
        });
    m_kube->set_apply_counter([this](std::string_view outcome) { m_metrics.kube_apply(outcome); });
    // A new view of the provider's objects: plan on it now, not at the next tick.
    m_kube->set_provider_listener([this] { request_wakeup(); });

    // Signals: blocked in every thread, taken by one thread with sigwait and
    // turned into flags the loop reads. No logic in a handler.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::thread signal_thread([this, set] { signal_thread_main(set); });
    m_kube->start();  // after the mask: every thread must block the signals sigwait takes

    auto connection = *m_ironic_connection;
    auto* credentials = &*m_credentials;
    std::string hmac = m_hmac_key;
    auto* self = this;
    m_executor = std::make_unique<Executor>(
        effective_limits(),
        [connection, credentials, hmac, self]() -> Executor::Runner {
            auto client = std::make_shared<IronicClient>(connection);
            auto runner = std::make_shared<NodeActionRunner>(*client, *credentials, hmac);
            return [client, runner, self](const Action& action) {
                // The observed node as of the last tick (copied under the loop's view lock).
                std::optional<ObservedNode> observed;
                {
                    std::lock_guard lock(self->m_view_mutex);
                    if (auto it = self->m_observed.nodes.find(action.node); it != self->m_observed.nodes.end()) {
                        observed = it->second;
                    }
                }
                return runner->run(action, observed ? &*observed : nullptr);
            };
        },
        // Journal first, then run: written on the worker right before the call.
        [self](QueuedAction& item) {
            std::lock_guard lock(self->m_store_mutex);
            JournalEntry entry;
            entry.object_kind = "Node";
            entry.object_name = item.action.node;
            entry.verb = to_string(item.action.verb);
            entry.params = journal_params(item.action);
            entry.revision = item.revision;
            entry.author = item.author;
            entry.created_at = unix_now();
            auto id = self->m_store->journal_add(entry);
            self->checked(id, "journal_add");
            if (id) {
                item.journal_id = *id;
                self->checked(self->m_store->journal_mark_running(*id, entry.created_at), "journal_mark_running");
            }
        },
        // And recorded the moment it returns, not at the loop's next pass:
        // what finished just before a kill -9 is not lost.
        [self](QueuedAction& item, const ActionResult& result) {
            const double now = unix_now();
            std::lock_guard lock(self->m_store_mutex);
            auto tx = self->m_store->transaction();
            bool ok = true;
            if (item.journal_id > 0) {
                ok = self->checked(self->m_store->journal_finish(item.journal_id,
                                                                 result.ok ? JournalState::done : JournalState::failed,
                                                                 result.ok ? result.summary : result.error, now),
                                   "journal_finish");
            }
            ok = ok && self->checked(self->m_store->add_event(completion_event(item, result, now)), "add_event");
            if (ok && tx) ok = tx->commit().has_value();
            item.recorded = ok;
        });
    m_executor->use_rate_limiter(connection.rate_limiter);
    m_executor->start();

    std::optional<gid_t> admin_group;
    if (!m_config.socket_group.empty()) {
        if (auto* g = getgrnam(m_config.socket_group.c_str())) {
            admin_group = g->gr_gid;
        } else {
            spdlog::warn("socket: group '{}' does not exist; only root and this user may run mutating commands",
                         m_config.socket_group);
        }
    }
    ControlServerOptions socket_options;
    socket_options.admin_group = admin_group;
    ControlServer server(m_config.socket, socket_options);
    register_commands(server);
    if (auto started = server.start(); !started) {
        spdlog::critical("socket: {}", started.error());
        m_executor->stop(std::chrono::milliseconds(0));
        m_kube->stop();
        kill(getpid(), SIGUSR2);
        signal_thread.join();
        return 1;
    }
    if (!m_config.metrics_listen.empty()) {
        m_metrics_server = std::make_unique<MetricsServer>(m_config.metrics_listen, [this] { return m_metrics.render(); });
        if (auto started = m_metrics_server->start(); !started) {
            // Metrics are not worth refusing to reconcile for; Prometheus shows the target down.
            spdlog::error("metrics: {} (continuing without the metrics listener)", started.error());
        }
    }
    spdlog::info("metalsync {} started: state {}, socket {}, git {}", METALSYNC_VERSION, m_config.state_dir.string(),
                 m_config.socket.string(), redact_url(m_config.git.url));

    bool notified_ready = false;
    bool watchdog = sd_watchdog_enabled(0, nullptr) > 0;
    while (!m_shutdown) {
        if (m_reload.exchange(false)) {
            auto reply = reload_config();
            spdlog::info("config-reload: {}", reply.text);
        }
        tick();
        update_gauges();  // every pass: the queue and limits stay current while Ironic is down
        if (!notified_ready && m_intake->current()) {
            sd_notify(0, "READY=1");
            notified_ready = true;
            m_metrics.set_ready(true);
            std::lock_guard lock(m_view_mutex);
            m_view.ready = true;
        }
        {
            std::lock_guard lock(m_view_mutex);
            std::size_t at_goal = 0;
            for (const auto& [_, n] : m_view.nodes) {
                if (n.condition == "at-goal" || n.condition == "claimed") ++at_goal;  // claimed: settled as far as Git goes
            }
            auto status = "STATUS=" + std::to_string(m_view.nodes.size()) + " nodes, " + std::to_string(at_goal) +
                          " at goal; revision " + short_id(m_view.revision);
            sd_notify(0, status.c_str());
        }
        if (watchdog) {
            sd_notify(0, "WATCHDOG=1");
        }
        wait_next_tick(std::chrono::milliseconds(1000));
    }
    spdlog::info("shutting down: no new actions; waiting up to 10s for those in flight");
    sd_notify(0, "STOPPING=1");
    if (m_git_poll.valid()) {
        // A fetch in flight is abandoned (its worker killed); the next start fetches again.
        git::cancel_all_workers();
        m_git_poll.wait();
    }
    auto never_started = m_executor->stop(std::chrono::seconds(10));
    m_kube->stop();
    record_completions(unix_now());
    server.stop();
    if (m_metrics_server) m_metrics_server->stop();
    kill(getpid(), SIGUSR2);
    signal_thread.join();
    spdlog::info("stopped ({} queued actions not started; they are planned again at the next start)",
                 never_started.size());
    return 0;
}

ControlReply Daemon::reload_config()
{
    auto cfg = load_daemon_config(m_config.source_file);
    if (!cfg) {
        std::string text = "configuration not reloaded, the running one is kept: ";
        for (const auto& d : cfg.error()) {
            text += d.to_string() + "; ";
        }
        return {k_result_error, text, nullptr};
    }
    std::vector<std::string> restart_needed;
    if (cfg->state_dir != m_config.state_dir) restart_needed.push_back("stateDir");
    if (cfg->socket != m_config.socket) restart_needed.push_back("socket");
    if (cfg->git.url != m_config.git.url || cfg->git.branch != m_config.git.branch || cfg->git.tag != m_config.git.tag ||
        cfg->git.commit != m_config.git.commit || cfg->git.path != m_config.git.path) {
        restart_needed.push_back("git");
    }
    if (cfg->ironic.endpoint != m_config.ironic.endpoint || cfg->ironic.cloud != m_config.ironic.cloud) {
        restart_needed.push_back("ironic");
    }
    m_config.limits = cfg->limits;
    m_config.poll_interval = cfg->poll_interval;
    m_config.retry_interval = cfg->retry_interval;
    m_config.log_level = cfg->log_level;
    if (cfg->instance != m_config.instance) restart_needed.push_back("instance");
    m_config.kubernetes = cfg->kubernetes;
    m_kube->set_settings(kube_settings(m_config));
    set_log_level(cfg->log_level);
    if (cfg->metrics_listen == m_config.metrics_listen && m_metrics_server && !m_metrics_server->running()) {
        if (auto started = m_metrics_server->start(); !started) spdlog::error("metrics: {}", started.error());
    }
    if (cfg->metrics_listen != m_config.metrics_listen) {
        if (cfg->metrics_listen.empty()) {
            if (m_metrics_server) m_metrics_server->stop();
            m_metrics_server.reset();
            m_config.metrics_listen.clear();
        } else if (!m_metrics_server) {
            auto server = std::make_unique<MetricsServer>(cfg->metrics_listen, [this] { return m_metrics.render(); });
            if (auto started = server->start(); started) {
                m_metrics_server = std::move(server);
                m_config.metrics_listen = cfg->metrics_listen;
            } else {
                spdlog::error("metrics: {}", started.error());
            }
        } else if (auto moved = m_metrics_server->rebind(cfg->metrics_listen); moved) {
            m_config.metrics_listen = cfg->metrics_listen;
        } else {
            spdlog::error("metrics: {} (still serving on {})", moved.error(), m_config.metrics_listen);
        }
    }
    std::string text = "configuration reloaded (limits, intervals, log level, kubernetes, metrics)";
    if (!restart_needed.empty()) {
        text += "; changes to ";
        for (std::size_t i = 0; i < restart_needed.size(); ++i) {
            text += (i ? ", " : "") + restart_needed[i];
        }
        text += " take effect at the next restart";
    }
    return {k_result_success, text, nullptr};
}

} // namespace daemon_internal

int run_daemon(const DaemonOptions& options)
{
    auto cfg = load_daemon_config(options.config);
    if (!cfg) {
        for (const auto& d : cfg.error()) {
            std::cerr << d.to_string() << "\n";
        }
        std::cerr << "metalsync daemon: " << options.config << " is not a valid configuration\n";
        return 2;
    }
    if (!options.log_format.empty()) {
        cfg->log_format = options.log_format;
    }
    if (options.check_config) {
        std::cout << options.config << ": configuration is valid\n";
        return 0;
    }
    setup_logging(cfg->log_format, cfg->log_level);
    daemon_internal::Daemon daemon(std::move(*cfg));
    return daemon.run();
}

} // namespace metalsync
