#pragma once
/// Random numbers: a small seedable generator that callers own and pass explicitly (to dropout,
/// to initialisers). There is no global random state, so a run is reproduced by its seeds alone.
///
/// The draws are computed here from the raw std::mt19937_64 stream, whose output the C++ standard
/// fixes, rather than with std::uniform_real_distribution / std::normal_distribution, whose
/// algorithms it leaves to the library: the same seed gives the same tensors with libstdc++ and
/// libc++.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>

#include <unfold/framework/tensor.hpp>

namespace unfold
{

/// A seeded random stream. Each draw advances it, so two dropout calls with one generator get
/// different masks, and two generators with the same seed give the same sequence of draws.
/// Copying a generator copies its position: the copy repeats the original's future draws.
class generator
{
public:
    /// A stream starting from `seed`.
    explicit generator(std::uint64_t seed)
        : m_engine(seed)
    {}

    /// Restarts the stream from `seed`.
    void seed(std::uint64_t seed)
    {
        m_engine.seed(seed);
        m_spare_normal = false;
    }

    /// One double drawn uniformly from [0, 1), with 53 random bits.
    double next_double() { return double(m_engine() >> 11) * 0x1.0p-53; }

    /// A tensor of `shape` with elements drawn uniformly from [lo, hi).
    tensor uniform(const shape_type& shape, real lo = 0, real hi = 1)
    {
        tensor t(shape);
        for (auto& v : t)
            v = real(lo + (double(hi) - double(lo)) * next_double());
        return t;
    }

    /// A tensor of `shape` with elements drawn from N(mean, stddev²) (Box–Muller).
    tensor normal(const shape_type& shape, real mean = 0, real stddev = 1)
    {
        tensor t(shape);
        for (auto& v : t)
            v = real(mean + double(stddev) * next_normal());
        return t;
    }

    /// A tensor of `shape` whose elements are 1 with probability `p` and 0 otherwise.
    tensor bernoulli(const shape_type& shape, real p)
    {
        UNFOLD_CHECK(p >= 0 && p <= 1, "bernoulli: probability {} is outside [0, 1]", p);
        tensor t(shape);
        for (auto& v : t)
            v = next_double() < double(p) ? real(1) : real(0);
        return t;
    }

    /// The underlying engine, for draws this class does not offer.
    std::mt19937_64& engine() { return m_engine; }

    /// The stream's whole position as text (the engine's standard text form and the Box–Muller
    /// spare), for saving with a training run: set_state() of it makes a generator repeat this
    /// one's future draws exactly.
    std::string state() const
    {
        std::ostringstream s;
        std::uint64_t spare_bits = 0;
        std::memcpy(&spare_bits, &m_spare, sizeof spare_bits);
        s << "mt19937_64 " << m_engine << ' ' << int(m_spare_normal) << ' ' << spare_bits;
        return s.str();
    }

    /// Restores a position saved by state(). All or nothing: text that is not such a state
    /// throws unfold::error and leaves the generator unchanged.
    void set_state(const std::string& text)
    {
        std::istringstream s(text);
        std::string kind;
        std::mt19937_64 engine;
        int spare_normal = -1;
        std::uint64_t spare_bits = 0;
        s >> kind >> engine >> spare_normal >> spare_bits;
        const bool read = !s.fail();
        if (read && !s.eof())
            s >> std::ws; // trailing blanks only (ws on a stream already at its end would fail it)
        UNFOLD_CHECK(kind == "mt19937_64" && read && s.eof() &&
                         (spare_normal == 0 || spare_normal == 1),
                     "generator: '{}' is not a saved generator state",
                     text.size() > 40 ? text.substr(0, 40) + "..." : text);
        m_engine = engine;
        m_spare_normal = spare_normal == 1;
        std::memcpy(&m_spare, &spare_bits, sizeof spare_bits);
    }

private:
    double next_normal()
    {
        if (m_spare_normal)
        {
            m_spare_normal = false;
            return m_spare;
        }
        const double u1 = 1.0 - next_double(); // in (0, 1]: log(u1) is finite
        const double u2 = next_double();
        const double radius = std::sqrt(-2.0 * std::log(u1));
        constexpr double two_pi = 6.283185307179586476925286766559;
        const double angle = two_pi * u2;
        m_spare = radius * std::sin(angle);
        m_spare_normal = true;
        return radius * std::cos(angle);
    }

    std::mt19937_64 m_engine;
    double m_spare = 0;
    bool m_spare_normal = false;
};

} // namespace unfold
