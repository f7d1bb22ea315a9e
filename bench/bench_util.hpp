#pragma once
/// What the benchmark programs need: medians, the load average, and how much of the machine
/// other processes used while something was measured.

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace unfold::bench
{
using clock_type = std::chrono::steady_clock;

/// A benchmarked shape (batch, sequence length, input, hidden) and its repetitions.
struct config
{
    std::string name;
    std::size_t B, T, I, H;
    int reps, quick_reps;
};

/// The four configs of issue #6, which both programs measure.
inline const std::vector<config>& benchmark_configs()
{
    static const std::vector<config> configs = {
        {"tiny", 1, 100, 16, 32, 41, 15},
        {"small", 16, 50, 64, 128, 21, 9},
        {"medium", 32, 35, 256, 256, 15, 7},
        {"large", 64, 100, 512, 512, 5, 3},
    };
    return configs;
}

/// The names of a comma-separated list ("tiny,large").
inline std::vector<std::string> split_names(const std::string& list)
{
    std::vector<std::string> names;
    std::istringstream in(list);
    std::string name;
    while (std::getline(in, name, ','))
        names.push_back(name);
    return names;
}

inline double seconds_since(clock_type::time_point start)
{
    return std::chrono::duration<double>(clock_type::now() - start).count();
}

/// The recurrent model with `gates` gate blocks: "RNN" (1), "GRU" (3) or "LSTM" (4).
inline const char* model_of_gates(std::size_t gates)
{
    return gates == 1 ? "RNN" : gates == 3 ? "GRU" : "LSTM";
}

/// "a, b, c": the places a swept shape occurs.
inline std::string joined(const std::vector<std::string>& places)
{
    std::string out;
    for (const std::string& p : places)
        out += (out.empty() ? "" : ", ") + p;
    return out;
}

inline double median(std::vector<double> v)
{
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

inline std::string loadavg()
{
    std::ifstream in("/proc/loadavg");
    std::string a, b, c;
    in >> a >> b >> c;
    return a + " " + b + " " + c;
}

/// CPU seconds used by the whole machine (/proc/stat) and by the measured processes (getrusage's
/// `who`: RUSAGE_SELF for this process's threads, RUSAGE_CHILDREN for finished children), and the
/// wall time.
struct cpu_use
{
    double machine, measured, wall;
};
inline cpu_use cpu_now(int who)
{
    std::ifstream in("/proc/stat");
    std::string cpu;
    long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
    rusage r{};
    getrusage(who, &r);
    const auto sec = [](const timeval& t) { return double(t.tv_sec) + 1e-6 * double(t.tv_usec); };
    return {double(user + nice + system + irq + softirq + steal) / double(sysconf(_SC_CLK_TCK)),
            sec(r.ru_utime) + sec(r.ru_stime), seconds_since(clock_type::time_point{})};
}
/// The share of one core that processes other than the measured ones used between two samples.
inline double others_busy(const cpu_use& a, const cpu_use& b)
{
    return std::max(0.0, (b.machine - a.machine) - (b.measured - a.measured)) /
           std::max(1e-9, b.wall - a.wall);
}
} // namespace unfold::bench
