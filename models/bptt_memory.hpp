#pragma once
/// How much of a sequence BPTT remembers: the memory policies unroll, the layers and the decoder
/// take, and how `--bptt-memory` spells them.
///
/// Note [Memory policies]
/// Backpropagation through time reads, at every step, values the forward pass computed at that
/// step, so a tape's memory grows with T. A policy keeps less and recomputes the rest during
/// backward (Note [Recomputation] in framework/tape.hpp), for any cell, a user's own included:
/// - all (the default): keep what some backward reads — for an LSTM its gates, c, φ(c) and h,
///   not the gates' pre-activations or the input projection — and recompute nothing.
/// - every:K: keep the state only after every K-th step (and each step's output h unless the
///   caller consumes it inside the step: unroll's each_step); backward recomputes each segment
///   of K steps from the state before it when it reaches the segment, holding one segment at a
///   time. Every step is recomputed once: about one more forward pass. every:K,stored:F keeps
///   the last F steps as `all` does and recomputes only the T − F before them.
/// - every:K,gemm: segments of K steps that keep the outputs of their matrix products (for an
///   LSTM its gates' pre-activations, 4 values of H against `all`'s 7): backward recomputes only
///   their elementwise work, from the state before the segment. every:K,gemm:G does so for the
///   last G of the segmented steps and recomputes the ones before them whole.
/// - gemm: every:1,gemm (the state of every step kept too).
/// - a budget in bytes ("256M"): plan_bptt picks what costs least within it, from one step
///   measured on a scratch tape (profile_step): all; else every:K,gemm,stored:F with as many
///   stored steps as fit; else every:K,gemm:G with as many steps keeping their GEMM outputs as
///   fit (a step stored costs nothing to recompute and keeps 7 values of H, a step keeping its
///   GEMM outputs costs its elementwise work for 4, a step recomputed whole costs its GEMMs too
///   for none, so the cheapest plan within a budget mixes two neighbours of the three).
///   plan_unroll reports the choice, the predicted peak of the tape and the recomputed steps
///   before anything runs, and tape::peak_bytes() measures the peak after.
/// Values are recomputed by the same ops on the same inputs in the same order, so gradients are
/// bit-identical under every policy. Masks and fed tokens are recorded as constants, so dropout
/// masks and feeding decisions are reproduced exactly, and an op whose forward draws keeps its
/// value. A value of a dropped segment read later (a hook's, retain_grad's, var::value()) is
/// recomputed on the spot: correct, at the cost of the recomputation. A long sequence's input can
/// be given by chunks (input_sequence's chunk function), recorded inside the segments.
/// A budget needs the whole sequence up front: step-by-step decoding (free running, scheduled
/// sampling, an encoder–decoder's decoder) takes every:K or gemm, and a layer shares its budget
/// evenly among its L·D unrolls.

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <unfold/framework/error.hpp>
#include <unfold/framework/tape.hpp>

namespace unfold
{

/// A memory policy for BPTT (Note [Memory policies]).
struct bptt_memory
{
    /// The kinds of policy.
    enum class kind
    {
        all,   ///< keep every value
        every, ///< keep the state every `steps` steps, recompute the segments between
        gemm,  ///< keep GEMM outputs and states, recompute the elementwise work
        budget ///< at most `bytes`: plan_bptt picks one of the others
    };
    kind how = kind::all;  ///< which policy
    std::size_t steps = 0; ///< K for kind::every
    /// For kind::every: the last `stored` steps are kept whole, not segmented (a planner's way
    /// to recompute fewer steps when the budget allows).
    std::size_t stored = 0;
    std::size_t bytes = 0; ///< the budget for kind::budget
    /// For kind::every: of the segmented steps, the last `cheap` (rounded out to whole segments;
    /// every_step: all of them) keep their GEMM outputs, so that backward recomputes only their
    /// elementwise work.
    std::size_t cheap = 0;
    static constexpr std::size_t every_step = std::size_t(-1); ///< `cheap` for all the steps

    /// Keep everything.
    static bptt_memory all() { return {}; }
    /// Keep the state every K steps (K ≥ 1); the last `stored` steps whole; of the steps before
    /// those, the last `cheap` keep their GEMM outputs.
    static bptt_memory every(std::size_t k, std::size_t stored = 0, std::size_t cheap = 0)
    {
        UNFOLD_CHECK(k >= 1, "bptt memory every:{}: the segment length must be at least 1", k);
        return {kind::every, k, stored, 0, cheap};
    }
    /// Keep GEMM outputs and states.
    static bptt_memory gemm() { return {kind::gemm, 1, 0, 0, every_step}; }
    /// At most `bytes` of BPTT values at any time (the tape's peak): the planner picks the policy
    /// that recomputes least within it.
    static bptt_memory budget(std::size_t bytes)
    {
        UNFOLD_CHECK(bytes > 0, "bptt memory budget: needs a positive number of bytes");
        return {kind::budget, 0, 0, bytes};
    }

    /// True unless the policy keeps everything.
    bool recomputes() const { return how != kind::all; }

    /// "all", "every:K", "every:K,stored:F", "gemm" or a budget ("256M"), as parse() reads it.
    std::string str() const
    {
        switch (how)
        {
            case kind::every:
                return fmt::format("every:{}{}{}", steps,
                                   cheap == every_step ? ",gemm"
                                   : cheap             ? fmt::format(",gemm:{}", cheap)
                                                       : "",
                                   stored ? fmt::format(",stored:{}", stored) : "");
            case kind::gemm:
                return "gemm";
            case kind::budget:
                return bytes_str(bytes);
            default:
                return "all";
        }
    }

    /// Reads "all", "every:K" (K ≥ 1, optionally followed by ",gemm" or ",gemm:G" and by
    /// ",stored:F"), "gemm", or a budget in bytes with an optional K, M or G suffix (powers of
    /// 1024): "256M". `what` names the setting in messages.
    static bptt_memory parse(const std::string& text, const std::string& what = "--bptt-memory")
    {
        const std::string expected =
            "expected all, every:K (keep the state every K steps), gemm (keep matrix products, "
            "recompute the rest) or a budget in bytes such as 256M";
        if (text == "all")
            return all();
        if (text == "gemm")
            return gemm();
        const std::string prefix = "every:";
        if (text.compare(0, prefix.size(), prefix) == 0)
        {
            std::vector<std::string> parts{""}; // K, then the options after commas
            for (char c : text.substr(prefix.size()))
                if (c == ',')
                    parts.emplace_back();
                else
                    parts.back() += c;
            const auto k = whole_number(parts[0]);
            UNFOLD_CHECK(k && *k >= 1, "{} '{}': every:K needs a whole number of steps K >= 1",
                         what, text);
            bptt_memory m = every(*k);
            for (std::size_t i = 1; i < parts.size(); ++i)
            {
                const std::string& part = parts[i];
                if (part == "gemm")
                    m.cheap = every_step;
                else if (part.compare(0, 5, "gemm:") == 0)
                {
                    const auto g = whole_number(part.substr(5));
                    UNFOLD_CHECK(g, "{} '{}': gemm:G needs a whole number of steps", what, text);
                    m.cheap = *g;
                }
                else if (part.compare(0, 7, "stored:") == 0)
                {
                    const auto f = whole_number(part.substr(7));
                    UNFOLD_CHECK(f, "{} '{}': stored:F needs a whole number of steps", what, text);
                    m.stored = *f;
                }
                else
                    fail(fmt::format("{} '{}': after every:K expected ,gemm, ,gemm:G (the last "
                                     "G steps keep their matrix products) or ,stored:F (the "
                                     "last F steps kept whole), not '{}'",
                                     what, text, part));
            }
            return m;
        }
        std::size_t unit = 1;
        std::string digits = text;
        if (!digits.empty())
            switch (digits.back())
            {
                case 'K':
                    unit = std::size_t(1) << 10;
                    break;
                case 'M':
                    unit = std::size_t(1) << 20;
                    break;
                case 'G':
                    unit = std::size_t(1) << 30;
                    break;
                default:
                    unit = 0;
            }
        if (unit)
            digits.pop_back();
        else
            unit = 1;
        const auto n = whole_number(digits);
        UNFOLD_CHECK(n, "{} '{}': {}", what, text, expected);
        UNFOLD_CHECK(*n > 0, "{} '{}': a budget needs a positive number of bytes", what, text);
        return budget(*n * unit);
    }

    /// "256M"-style bytes (exact multiples of 1024 get a suffix).
    static std::string bytes_str(std::size_t n)
    {
        if (n >= (std::size_t(1) << 30) && n % (std::size_t(1) << 30) == 0)
            return fmt::format("{}G", n >> 30);
        if (n >= (std::size_t(1) << 20) && n % (std::size_t(1) << 20) == 0)
            return fmt::format("{}M", n >> 20);
        if (n >= 1024 && n % 1024 == 0)
            return fmt::format("{}K", n >> 10);
        return fmt::format("{}", n);
    }

private:
    /// The value of a string of decimal digits (nothing else), if it is one.
    static std::optional<std::size_t> whole_number(const std::string& s)
    {
        if (s.empty() || s.size() > 18 ||
            !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
            return std::nullopt;
        return static_cast<std::size_t>(std::stoull(s));
    }
};

/// What one step of a cell records, measured on a scratch tape (profile_step in
/// models/unroll.hpp), in bytes: what plan_bptt predicts from.
struct step_profile
{
    std::size_t step = 0;         ///< the values one step records
    std::size_t read = 0;         ///< of those, the values some backward reads
    std::size_t gemm = 0;         ///< of those, the outputs of expensive ops (GEMMs)
    std::size_t state = 0;        ///< one state, every part
    std::size_t output = 0;       ///< one output h
    std::size_t projection = 0;   ///< the input projection of one step (0 without project())
    bool projection_read = false; ///< backward reads the projection (kept, then, by `all`)
    bool input_whole = true;      ///< the input is on the tape whole, not recorded chunk by chunk
    std::size_t input = 0;        ///< a copy of one step's input (the chunks' slices)
    std::size_t gradients = 0;    ///< the gradient buffers backward of one step keeps in its pool
    std::size_t parameters = 0;   ///< the cell's parameters, copied onto the tape once
};

/// A memory policy resolved for one unroll: what runs, the peak it predicts, and what it costs.
struct bptt_plan
{
    bptt_memory policy;               ///< what runs (never a budget)
    std::size_t steps = 0;            ///< T
    std::size_t predicted_bytes = 0;  ///< the tape's peak for the unroll (tape::peak_bytes)
    std::size_t recomputed_steps = 0; ///< steps backward recomputes whole
    std::size_t cheap_steps = 0;      ///< steps backward recomputes the elementwise work of

    /// "every:32: predicted peak 61.2 MB, recomputes 968 of 1000 steps", with ", and the
    /// elementwise work of 200 more" when some steps keep their GEMM outputs.
    std::string str() const
    {
        return fmt::format(
            "{}: predicted peak {:.1f} MB, recomputes {} of {} steps{}", policy.str(),
            double(predicted_bytes) / 1e6, recomputed_steps, steps,
            cheap_steps ? fmt::format(" and the elementwise work of {} more", cheap_steps) : "");
    }
};

/// The plan of `memory` for T steps whose input is projected in chunks of `chunk` steps, with the
/// outputs kept for after the loop when `outputs_kept` (else consumed inside each step). A budget
/// resolves to the policy that costs least within it (Note [Memory policies]): everything; else
/// segments that keep their GEMM outputs, with the last steps stored whole as far as the budget
/// allows; else segments recomputed whole, with the last of them keeping their GEMM outputs as
/// far as it allows. Throws naming the minimum when even the smallest plan does not fit.
inline bptt_plan plan_bptt(const step_profile& p, std::size_t T, std::size_t chunk,
                           const bptt_memory& memory, bool outputs_kept)
{
    chunk = std::min(chunk, T);
    const std::size_t projection = chunk * p.projection;      // one chunk's value or gradient
    const std::size_t copy = chunk < T ? chunk * p.input : 0; // its slice of the input
    const std::size_t output_grads = outputs_kept ? T * p.output : 0; // the loss's, up front
    const std::size_t fixed = // data, weights, initial state
        (p.input_whole ? T * p.input : 0) + p.parameters + p.state;
    auto predict = [&](const bptt_memory& m) -> bptt_plan {
        bptt_plan r;
        r.policy = m;
        r.steps = T;
        r.predicted_bytes = fixed;
        if (m.how == bptt_memory::kind::all)
        {
            // What backward reads of every step (the last step whole), a chunk's projection
            // while its steps run and its gradient.
            r.predicted_bytes += T * p.read + p.step + // the outputs are among what is read
                                 (p.projection_read ? T * p.projection : projection) + copy +
                                 projection + p.gradients + output_grads;
            return r;
        }
        // gemm is every:1,gemm. Segments of K steps; the last F steps are stored; of the S
        // before them, the segments from first_cheap on keep their GEMM outputs.
        const std::size_t K = std::min(m.steps, T);
        const std::size_t F = std::min(m.stored, T);
        const std::size_t S = T - F;
        const std::size_t segments = (S + K - 1) / K;
        const std::size_t G = std::min(m.cheap, S);
        const std::size_t first_cheap = G > 0 ? (S - G) / K : segments;
        const std::size_t cheap = S - std::min(S, first_cheap * K); // steps keeping GEMM outputs
        const std::size_t last = S % K ? S % K : std::min(K, S);    // steps in the last segment
        // Each segment is dropped when the next one's first step ends, so all are recomputed
        // but the last, unless stored steps follow it.
        const bool last_kept = F == 0 && S > 0;
        r.cheap_steps = cheap - (last_kept && cheap > 0 ? last : 0);
        r.recomputed_steps = S - cheap - (last_kept && cheap == 0 ? last : 0);
        // Forward keeps the outputs, the states at segment ends, the GEMM outputs of the cheap
        // segments, and the last segment whole (or the stored steps, what backward reads of
        // them); backward frees each as it passes it (release_after_backward) and recomputes the
        // segments before, one at a time: the peak comes at forward's end, at the first cheap
        // segment recomputed, or at the first segment recomputed whole, when the GEMM outputs
        // kept after it are gone.
        const std::size_t kept = (outputs_kept ? S * p.output : 0) + // never freed
                                 segments * (p.state - (outputs_kept ? p.output : 0));
        const std::size_t tail =
            F > 0 ? F * p.read + p.step : last * (cheap > 0 ? p.step - p.gemm : p.step);
        // The last chunk's projection is dropped when its steps are done; its gradient and its
        // input come with backward.
        const std::size_t at_end = cheap * p.gemm + tail + projection + copy;
        const std::size_t cheap_again =
            r.cheap_steps > 0 ? cheap * p.gemm + std::min(K, r.cheap_steps) * (p.step - p.gemm) +
                                    projection + copy
                              : 0;
        // Recomputing a segment whole recomputes the projections of the chunks it touches (one
        // more where segments straddle chunks: unless one length divides the other); one
        // chunk's gradient is live with them.
        const std::size_t C = chunk;
        const bool aligned = C % K == 0 || K % C == 0;
        const std::size_t touched = std::min((T + C - 1) / C, (K + C - 1) / C + (aligned ? 0 : 1));
        const std::size_t whole_again = r.recomputed_steps > 0
                                            ? std::min(K, r.recomputed_steps) * p.step +
                                                  touched * (projection + copy) + projection
                                            : 0;
        r.predicted_bytes +=
            kept + std::max({at_end, cheap_again, whole_again}) + p.gradients + output_grads;
        return r;
    };
    if (memory.how == bptt_memory::kind::gemm)
    {
        bptt_plan r = predict(bptt_memory::every(1, 0, bptt_memory::every_step));
        r.policy = memory;
        return r;
    }
    if (memory.how != bptt_memory::kind::budget)
        return predict(memory);
    const bptt_plan all = predict(bptt_memory::all());
    if (all.predicted_bytes <= memory.bytes)
        return all;
    // The segment length with the least memory (≈ √(T · state / step), so past 2√T the search
    // stops), for segments that keep their GEMM outputs (cheap = every_step) or not (0).
    auto least = [&](std::size_t cheap) {
        bptt_plan best = predict(bptt_memory::every(1, 0, cheap));
        for (std::size_t K = 2; K <= T; ++K)
        {
            const bptt_plan r = predict(bptt_memory::every(K, 0, cheap));
            if (r.predicted_bytes < best.predicted_bytes)
                best = r;
            else if (K * K > 4 * T)
                break;
        }
        return best;
    };
    // The most steps (stored, or keeping GEMM outputs) that still fit, by bisection: the bytes
    // grow with either.
    auto most = [&](auto policy_with) {
        std::size_t low = 0, high = T;
        while (low < high)
        {
            const std::size_t mid = (low + high + 1) / 2;
            if (predict(policy_with(mid)).predicted_bytes <= memory.bytes)
                low = mid;
            else
                high = mid - 1;
        }
        return predict(policy_with(low));
    };
    const bptt_plan cheap = least(bptt_memory::every_step);
    if (cheap.predicted_bytes <= memory.bytes)
        return most([&](std::size_t F) {
            return bptt_memory::every(cheap.policy.steps, F, bptt_memory::every_step);
        });
    const bptt_plan whole = least(0);
    UNFOLD_CHECK(whole.predicted_bytes <= memory.bytes,
                 "bptt memory budget {} ({} bytes) is below the least this unroll of {} steps "
                 "needs: {} bytes ({}, {:.1f} MB); raise the budget or shorten the sequence",
                 memory.str(), memory.bytes, T, whole.predicted_bytes, whole.policy.str(),
                 double(whole.predicted_bytes) / 1e6);
    return most([&](std::size_t G) { return bptt_memory::every(whole.policy.steps, 0, G); });
}

/// Applies a memory policy to a loop of steps recorded on a tape (unroll, the decoder's
/// step-by-step loop): segments are K steps (one for gemm), and a segment's values are dropped at
/// the end of the next segment's first step (but the GEMM outputs of a segment that keeps them),
/// keeping what that step read from it (its last state, a running loss) and what keep() was
/// given (outputs read after the loop); a later step that reads more of it recomputes what it
/// reads. Forward then holds one segment at a time, as backward does. The last segment is kept
/// whole: the caller reads its final state. Steps backward does not recompute (every step under
/// `all`, the stored steps) keep only what some backward reads (recomputed()).
class segmenter
{
public:
    /// Segments for `memory` (never a budget: plan it first) on `t`, over `steps` steps.
    segmenter(tape& t, const bptt_memory& memory, std::size_t steps)
        : m_tape(t)
        , m_active(memory.recomputes())
        , m_length(memory.how == bptt_memory::kind::every ? memory.steps : 1)
        , m_segmented(steps - std::min(memory.stored, steps))
        , m_cheap_from(m_segmented - std::min(memory.cheap, m_segmented))
    {
        UNFOLD_CHECK(memory.how != bptt_memory::kind::budget,
                     "a memory budget must be planned (plan_bptt) before its steps run");
        m_tape.replay_constants(true); // slices of the input data can be dropped too
        m_first = m_tape.size();
    }
    ~segmenter() { m_tape.replay_constants(false); }
    segmenter(const segmenter&) = delete;
    segmenter& operator=(const segmenter&) = delete;

    /// True unless the policy keeps everything.
    bool active() const { return m_active; }
    /// Call before recording step k (k = 0, 1, … in the order the steps run).
    void begin_step(std::size_t k)
    {
        m_first_step = !recomputed(k) || k % m_length == 0;
        if (m_first_step)
            m_start = m_tape.size();
    }
    /// Keeps `v`, recorded in the current segment, when its segment's values are dropped, and
    /// after backward.
    void keep(const var& v)
    {
        m_kept.push_back(v);
        if (m_active)
            m_kept_after.push_back(v.index());
    }
    /// Call after the last step with the final state's parts, which are kept after backward:
    /// backward frees the rest as it passes it (tape::release_after_backward).
    void finish(const std::vector<var>& final_state)
    {
        if (!m_active)
            return;
        for (const var& v : final_state)
            m_kept_after.push_back(v.index());
        std::sort(m_kept_after.begin(), m_kept_after.end());
        m_kept_after.erase(std::unique(m_kept_after.begin(), m_kept_after.end()),
                           m_kept_after.end()); // a chunk is kept by each of its steps
        m_tape.release_after_backward(m_first, m_tape.size(), m_kept_after);
    }
    /// Call after recording step k.
    void end_step(std::size_t k)
    {
        // The first step of a segment has read what it needs of the one before (its last state,
        // a running loss): that one's values can go.
        if (m_first_step && m_ended.has_value())
            drop_ended();
        m_first_step = false;
        if (recomputed(k) && k % m_length != m_length - 1 && k + 1 != m_segmented)
            return; // the segment goes on
        // A segment keeps its GEMM outputs when it ends among the last `cheap` segmented steps.
        m_ended =
            ended_segment{m_start, m_tape.size(), recomputed(k),
                          k + 1 > m_cheap_from ? recompute::cheap_values : recompute::every_value};
        m_ended_kept.swap(m_kept); // both keep their capacity: no allocation per step
        m_kept.clear();
    }

private:
    /// True when step k is in a segment backward recomputes; the others (every step keeping
    /// everything, the stored steps) are one step to a segment and keep only what backward
    /// reads: their values nobody's backward reads are freed once the next step has read what
    /// it needed (a gate's pre-activation).
    bool recomputed(std::size_t k) const { return m_active && k < m_segmented; }

    /// Drops the values of the segment that ended last (what the next one read of it stays).
    void drop_ended()
    {
        const ended_segment& e = *m_ended;
        if (e.recomputed)
            m_tape.drop_values(e.from, e.to, m_ended_kept, e.what);
        else
            m_tape.drop_unread(e.from, e.to, m_ended_kept);
        m_ended.reset();
        m_ended_kept.clear();
    }

    /// A segment whose values wait for the next segment's first step.
    struct ended_segment
    {
        std::size_t from, to; // its nodes
        bool recomputed;      // backward recomputes it
        recompute what;       // what drop_values frees of it
    };

    tape& m_tape;
    bool m_active;
    std::size_t m_length, m_segmented;
    std::size_t m_cheap_from; // the segments that end after this step keep their GEMM outputs
    std::size_t m_start = 0;  // the current segment's first node
    bool m_first_step = false;
    std::optional<ended_segment> m_ended;
    std::vector<var> m_kept, m_ended_kept;
    std::size_t m_first = 0;               // the first node of the steps
    std::vector<std::size_t> m_kept_after; // what keep() was given: kept after backward
};

} // namespace unfold
