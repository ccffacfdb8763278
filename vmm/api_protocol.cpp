#include "vmm/api_protocol.hpp"

#include <cstdio>
#include <functional>
#include <map>
#include <new>
#include <vector>

namespace minivmm {

using json = nlohmann::ordered_json;

namespace {

std::string line_of(const json& j) {
    // A client's bytes echoed back in an error (an unknown command's name)
    // may not be UTF-8: replace rather than throw.
    return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

struct Command {
    // Arguments besides "cmd", each a JSON string (the only kind any takes).
    std::vector<std::string> optional_strings;
    std::function<json(ApiTarget&, const json& req, Fd passed)> run;
    bool takes_fd = false;  // needs a file passed with the request
};

bool stop_after(const json& r) {
    std::string then = r.value("then", std::string("resume"));
    if (then != "resume" && then != "stop") throw ApiError("'then' must be \"resume\" or \"stop\", not '" + then + "'");
    return then == "stop";
}

const std::map<std::string, Command>& commands() {
    static const std::map<std::string, Command> table = {
        {"status", {{}, [](ApiTarget& t, const json&, Fd) { return t.status(); }}},
        {"stats", {{"nic"}, [](ApiTarget& t, const json& r, Fd) { return t.stats(r.value("nic", std::string())); }}},
        {"pause", {{}, [](ApiTarget& t, const json&, Fd) { return t.pause(); }}},
        {"resume", {{}, [](ApiTarget& t, const json&, Fd) { return t.resume(); }}},
        {"quit", {{}, [](ApiTarget& t, const json&, Fd) { return t.quit(); }}},
        {"snapshot",
         {{"file", "then"},
          [](ApiTarget& t, const json& r, Fd f) {
              return t.snapshot(std::move(f), r.value("file", std::string("(passed file)")), stop_after(r));
          },
          true}},
        {"migrate",
         {{"uri"},
          [](ApiTarget& t, const json& r, Fd conn) {
              return t.migrate(std::move(conn), r.value("uri", std::string("(passed connection)")));
          },
          true}},
    };
    return table;
}

json dispatch(std::string_view line, ApiTarget& target, PassedFds* fds) {
    json req = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (req.is_discarded()) throw ApiError("request is not valid JSON");
    if (!req.is_object()) throw ApiError("request must be a JSON object, like {\"cmd\":\"status\"}");
    auto cmd = req.find("cmd");
    if (cmd == req.end()) throw ApiError("request has no \"cmd\"");
    if (!cmd->is_string()) throw ApiError("\"cmd\" must be a string");
    const std::string& name = cmd->get_ref<const std::string&>();
    auto it = commands().find(name);
    if (it == commands().end()) throw ApiError("unknown command '" + name + "'");
    const Command& c = it->second;
    for (const auto& [key, value] : req.items()) {
        if (key == "cmd") continue;
        bool known = false;
        for (const auto& k : c.optional_strings) known |= k == key;
        if (!known) throw ApiError("'" + name + "' takes no argument '" + key + "'");
        if (!value.is_string()) throw ApiError("'" + name + "': argument '" + key + "' must be a string");
    }
    Fd passed;
    if (c.takes_fd) {
        if (!fds || fds->empty())
            throw ApiError("'" + name + "' needs a file passed with the request (SCM_RIGHTS; minivmm ctl does this)");
        passed = std::move(fds->front());
        fds->pop_front();
    }
    json reply = c.run(target, req, std::move(passed));
    if (reply.is_null()) reply = json::object();
    return reply;
}

}  // namespace

std::string api_error_reply(const std::string& why) { return line_of(json{{"ok", false}, {"error", why}}); }

std::string api_overlong_reply() {
    return api_error_reply("request line longer than " + std::to_string(kMaxRequestLine) + " bytes");
}

std::string api_handle_line(std::string_view line, ApiTarget& target, PassedFds* fds) {
    if (line.size() > kMaxRequestLine) return api_overlong_reply();
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // a client sending CRLF
    try {
        json reply = dispatch(line, target, fds);
        json out = {{"ok", true}};
        out.update(reply);
        return line_of(out);
    } catch (const ApiError& e) {
        return api_error_reply(e.what());
    } catch (const json::exception& e) {
        // A target's reply that JSON cannot hold: say so rather than end the thread.
        return api_error_reply(std::string("cannot form the reply: ") + e.what());
    } catch (const std::bad_alloc&) {
        return api_error_reply("out of memory");
    } catch (const std::exception& e) {
        // Whatever else a command throws (a failed thread start, a KVM
        // call) fails that request, not the VM; the operator hears of it.
        std::fprintf(stderr, "\r\nminivmm: control socket: a request failed: %s\n", e.what());
        return api_error_reply(std::string("internal error: ") + e.what());
    }
}

}  // namespace minivmm
