#include "vmm/api_protocol.hpp"

#include <functional>
#include <map>
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
    std::function<json(ApiTarget&, const json& req)> run;
};

const std::map<std::string, Command>& commands() {
    static const std::map<std::string, Command> table = {
        {"status", {{}, [](ApiTarget& t, const json&) { return t.status(); }}},
        {"stats", {{"nic"}, [](ApiTarget& t, const json& r) { return t.stats(r.value("nic", std::string())); }}},
        {"pause", {{}, [](ApiTarget& t, const json&) { return t.pause(); }}},
        {"resume", {{}, [](ApiTarget& t, const json&) { return t.resume(); }}},
        {"quit", {{}, [](ApiTarget& t, const json&) { return t.quit(); }}},
    };
    return table;
}

json dispatch(std::string_view line, ApiTarget& target) {
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
    json reply = c.run(target, req);
    if (reply.is_null()) reply = json::object();
    return reply;
}

}  // namespace

std::string api_error_reply(const std::string& why) { return line_of(json{{"ok", false}, {"error", why}}); }

std::string api_overlong_reply() {
    return api_error_reply("request line longer than " + std::to_string(kMaxRequestLine) + " bytes");
}

std::string api_handle_line(std::string_view line, ApiTarget& target) {
    if (line.size() > kMaxRequestLine) return api_overlong_reply();
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // a client sending CRLF
    try {
        json reply = dispatch(line, target);
        json out = {{"ok", true}};
        out.update(reply);
        return line_of(out);
    } catch (const ApiError& e) {
        return api_error_reply(e.what());
    } catch (const json::exception& e) {
        // A target's reply that JSON cannot hold: say so rather than end the thread.
        return api_error_reply(std::string("cannot form the reply: ") + e.what());
    }
}

}  // namespace minivmm
