// vhost=kernel: the kernel's vhost-net, driven through /dev/vhost-net.
#include <fcntl.h>
#include <sys/ioctl.h>

#include <cstring>

#include "vhost/dirty_log.hpp"
#include "vhost/vhost.hpp"
#include "vhost/vhost_abi.hpp"
#include "vmm/error.hpp"
#include "vmm/fd.hpp"

namespace minivmm {

namespace {
using namespace vhost_abi;

// vhost-net serves one queue pair per open: ring i is ring i % 2 of device
// i / 2, and device-wide settings go to every device.
class KernelVhost : public VhostBackend {
public:
    explicit KernelVhost(std::vector<Fd> fds) : fds_(std::move(fds)), rings_(2 * fds_.size()) {}
    const char* name() const override { return "kernel"; }
    void set_owner() override { all(VHOST_SET_OWNER, nullptr, "SET_OWNER"); }
    uint64_t get_features() override {
        uint64_t f = 0;
        call(0, VHOST_GET_FEATURES, &f, "GET_FEATURES");
        return f;
    }
    void set_features(uint64_t f) override { all(VHOST_SET_FEATURES, &f, "SET_FEATURES"); }
    void set_mem_table(const std::vector<VhostRegion>& regions) override {
        // struct vhost_memory ends in a flexible array: build it by hand.
        std::vector<uint8_t> buf(sizeof(vhost_memory) + regions.size() * sizeof(vhost_memory_region));
        auto* m = reinterpret_cast<vhost_memory*>(buf.data());
        m->nregions = static_cast<uint32_t>(regions.size());
        auto* r = reinterpret_cast<vhost_memory_region*>(buf.data() + sizeof(vhost_memory));
        for (size_t i = 0; i < regions.size(); i++)
            r[i] = {regions[i].gpa, regions[i].size, regions[i].uaddr, 0};
        if (log_ && !log_.covers(regions)) throw internal_error("vhost-net SET_MEM_TABLE: beyond the dirty log", EFAULT);
        all(VHOST_SET_MEM_TABLE, buf.data(), "SET_MEM_TABLE");
        regions_ = regions;
    }
    // The kernel checks only that the log is mapped memory, not that it is
    // ours: the log's size is checked here, against what the kernel will
    // mark (guest memory, and each ring's used ring at its log address).
    void set_log_base(uint64_t uaddr, uint64_t size) override {
        DirtyLog log(reinterpret_cast<uint8_t*>(uaddr), size);
        bool ok = !log || log.covers(regions_);
        for (const Ring& r : rings_) ok = ok && (!log || !r.log_used || log.covers(r.log, used_bytes(r.num)));
        if (!ok) throw internal_error("vhost-net SET_LOG_BASE: a log smaller than guest memory", EFAULT);
        all(VHOST_SET_LOG_BASE, &uaddr, "SET_LOG_BASE");
        log_ = log;
    }
    void set_vring_num(unsigned idx, unsigned num) override {
        vhost_vring_state s{idx % 2, num};
        call(dev(idx), VHOST_SET_VRING_NUM, &s, "SET_VRING_NUM");
        rings_[idx].num = num;
    }
    void set_vring_base(unsigned idx, unsigned base) override {
        vhost_vring_state s{idx % 2, base};
        call(dev(idx), VHOST_SET_VRING_BASE, &s, "SET_VRING_BASE");
    }
    unsigned get_vring_base(unsigned idx) override {
        vhost_vring_state s{idx % 2, 0};
        call(dev(idx), VHOST_GET_VRING_BASE, &s, "GET_VRING_BASE");
        return s.num;
    }
    void set_vring_addr(unsigned idx, const VringAddr& a) override {
        vhost_vring_addr v{};
        v.index = idx % 2;
        v.flags = a.log_used ? 1u << kVringFLog : 0;
        v.desc_user_addr = a.desc;
        v.avail_user_addr = a.avail;
        v.used_user_addr = a.used;
        v.log_guest_addr = a.log;
        unsigned d = dev(idx);
        if (log_ && a.log_used && !log_.covers(a.log, used_bytes(rings_[idx].num)))
            throw internal_error("vhost-net SET_VRING_ADDR: used ring beyond the dirty log", EFAULT);
        call(d, VHOST_SET_VRING_ADDR, &v, "SET_VRING_ADDR");
        rings_[idx].log_used = a.log_used;
        rings_[idx].log = a.log;
    }
    void set_vring_kick(unsigned idx, int fd) override { file(VHOST_SET_VRING_KICK, idx, fd, "SET_VRING_KICK"); }
    void set_vring_call(unsigned idx, int fd) override { file(VHOST_SET_VRING_CALL, idx, fd, "SET_VRING_CALL"); }
    void set_vring_err(unsigned idx, int fd) override { file(VHOST_SET_VRING_ERR, idx, fd, "SET_VRING_ERR"); }
    void set_backend(unsigned idx, int fd) override { file(VHOST_NET_SET_BACKEND, idx, fd, "NET_SET_BACKEND"); }

private:
    unsigned dev(unsigned idx) const {
        if (idx / 2 >= fds_.size()) throw InternalError("vhost-net: no ring " + std::to_string(idx));
        return idx / 2;
    }
    void file(unsigned long req, unsigned idx, int fd, const char* what) {
        vhost_vring_file f{idx % 2, fd};
        call(dev(idx), req, &f, what);
    }
    void all(unsigned long req, void* arg, const char* what) {
        for (unsigned d = 0; d < fds_.size(); d++) call(d, req, arg, what);
    }
    void call(unsigned d, unsigned long req, void* arg, const char* what) {
        if (ioctl(fds_[d].get(), req, arg) < 0) throw internal_error(std::string("vhost-net ") + what);
    }
    // The used ring with its avail_event word, as vhost-net logs it.
    static uint64_t used_bytes(unsigned num) { return 4 + 8ull * num + 2; }
    struct Ring {
        unsigned num = 0;
        bool log_used = false;
        uint64_t log = 0;
    };
    std::vector<Fd> fds_;
    std::vector<Ring> rings_;
    std::vector<VhostRegion> regions_;
    DirtyLog log_;
};
}  // namespace

std::unique_ptr<VhostBackend> open_kernel_vhost(unsigned pairs) {
    std::vector<Fd> fds;
    for (unsigned i = 0; i < pairs; i++) {
        Fd fd(::open("/dev/vhost-net", O_RDWR | O_CLOEXEC));
        if (!fd) throw sys_error("cannot open /dev/vhost-net");
        fds.push_back(std::move(fd));
    }
    auto v = std::make_unique<KernelVhost>(std::move(fds));
    v->set_owner();
    return v;
}

}  // namespace minivmm
