#pragma once
/// Attention over a memory of encoder outputs: at every decoding step a query q (the decoder's
/// state) scores each source position, a softmax over the valid positions turns the scores into
/// weights, and the context is the weighted sum of the memory. With memory m (S, B, E), time-major
/// as a layer returns it, query q (B, Q) and the source lengths:
///
///     additive (Bahdanau et al. 2015):        e_{b,s} = vᵀ tanh(W_k m_{s,b} + b_k + W_q q_b)
///     multiplicative (Luong et al. 2015, "general"): e_{b,s} = m_{s,b}ᵀ W_a q_b
///     α_b = softmax(e_b) over s < length_b    (exactly 0 at padded positions)
///     c_b = Σ_s α_{b,s} m_{s,b}                (B, E)
///
/// The part that does not depend on the query (W_k m + b_k) is computed once per source by
/// remember(), not at every step. Everything is a composition of ops, so attention is
/// differentiated like any cell: BPTT reaches the encoder through every step's weights.

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include <unfold/framework/param.hpp>
#include <unfold/framework/random.hpp>
#include <unfold/framework/tape.hpp>
#include <unfold/models/cell.hpp>
#include <unfold/models/linear.hpp>
#include <unfold/models/site.hpp>
#include <unfold/ops/add.hpp>
#include <unfold/ops/matmul.hpp>
#include <unfold/ops/mul.hpp>
#include <unfold/ops/reshape.hpp>
#include <unfold/ops/softmax.hpp>
#include <unfold/ops/sum.hpp>
#include <unfold/ops/tanh.hpp>
#include <unfold/ops/transpose.hpp>

namespace unfold
{

/// How a query scores a memory position.
enum class attention_kind
{
    additive,      ///< vᵀ tanh(W_k m + b_k + W_q q) (Bahdanau)
    multiplicative ///< mᵀ W_a q (Luong's "general" score)
};

/// "additive" or "multiplicative".
inline const char* attention_name(attention_kind k)
{
    return k == attention_kind::additive ? "additive" : "multiplicative";
}

/// What attending over one batch of sources needs, recorded once per source by
/// attention::remember(); valid while its tape is.
struct attention_memory
{
    var values;  ///< m (S, B, E): what the context averages
    var keys;    ///< (S, B, A): W_k m + b_k (additive); m itself (multiplicative)
    tensor mask; ///< (B, S): 1 at a valid source position, 0 at padding
};

/// One step's attention: the context and the weights it was averaged with.
struct attention_step
{
    var context; ///< c (B, E)
    var weights; ///< α (B, S): each row sums to 1 over the valid positions
};

/// Attention with its parameters (see the file's comment for the equations).
class attention
{
public:
    /// Parameters under `prefix`, drawn as PyTorch's nn.Linear draws them (uniform ±1/√in):
    /// additive "key.weight" (A, E), "key.bias" (A), "query.weight" (A, Q), "score.weight" (1, A);
    /// multiplicative "weight" (E, Q) (A is unused).
    static attention create(param_store& store, attention_kind kind, std::size_t memory_size,
                            std::size_t query_size, std::size_t attention_size, generator& g,
                            const std::string& prefix = "attn.")
    {
        UNFOLD_CHECK(memory_size > 0 && query_size > 0 &&
                         (kind == attention_kind::multiplicative || attention_size > 0),
                     "attention: memory size {}, query size {} and attention size {} must be "
                     "positive",
                     memory_size, query_size, attention_size);
        attention a;
        a.m_kind = kind;
        a.m_memory_size = memory_size;
        a.m_query_size = query_size;
        if (kind == attention_kind::additive)
        {
            a.m_key = linear::create(store, memory_size, attention_size, g, prefix + "key.");
            // No query bias: b_k already shifts every score's argument.
            a.m_query = add_uniform(store, prefix + "query.weight", {attention_size, query_size},
                                    real(1) / std::sqrt(real(query_size)), g);
            a.m_score = add_uniform(store, prefix + "score.weight", {1, attention_size},
                                    real(1) / std::sqrt(real(attention_size)), g);
        }
        else
            a.m_query = add_uniform(store, prefix + "weight", {memory_size, query_size},
                                    real(1) / std::sqrt(real(query_size)), g);
        return a;
    }

    /// How a query scores a position.
    attention_kind kind() const { return m_kind; }
    /// E, the features of a memory position.
    std::size_t memory_size() const { return m_memory_size; }
    /// Q, the features of a query.
    std::size_t query_size() const { return m_query_size; }

    /// The memory of a batch of sources: `memory` (S, B, E) and each source's length in [1, S]
    /// (empty: all S). Throws naming the shapes when they do not fit.
    attention_memory remember(tape& t, const var& memory,
                              const std::vector<std::size_t>& lengths = {}) const
    {
        check_memory(memory);
        const std::size_t S = memory.shape()[0], B = memory.shape()[1];
        UNFOLD_CHECK(lengths.empty() || lengths.size() == B,
                     "attention: {} source lengths for a memory of shape {} (batch {})",
                     lengths.size(), shape_str(memory.shape()), B);
        tensor mask(shape_type{B, S}, real(1));
        for (std::size_t b = 0; b < lengths.size(); ++b)
        {
            UNFOLD_CHECK(lengths[b] >= 1 && lengths[b] <= S,
                         "attention: source {} has length {}, outside [1, {}] for a memory of "
                         "shape {}",
                         b, lengths[b], S, shape_str(memory.shape()));
            for (std::size_t s = lengths[b]; s < S; ++s)
                mask(b, s) = 0;
        }
        return remember_masked(t, memory, std::move(mask));
    }

    /// The same with the mask given: (B, S), 1 at valid positions and 0 at padding.
    attention_memory remember_masked(tape& t, const var& memory, tensor mask) const
    {
        check_memory(memory);
        const shape_type expected{memory.shape()[1], memory.shape()[0]};
        UNFOLD_CHECK(mask.shape() == expected,
                     "attention: a source mask of shape {} for a memory of shape {}: it must be "
                     "(B, S) = {}",
                     shape_str(mask.shape()), shape_str(memory.shape()), shape_str(expected));
        const var keys = m_kind == attention_kind::additive
                             ? label("attention", [&] { return m_key(t, memory); })
                             : memory;
        return {memory, keys, std::move(mask)};
    }

    /// The context and weights for `query` (B, Q) over `memory`.
    attention_step operator()(tape& t, const attention_memory& memory, const var& query) const
    {
        const std::size_t S = memory.values.shape()[0], B = memory.values.shape()[1];
        UNFOLD_CHECK(query.dimension() == 2 && query.shape() == shape_type({B, m_query_size}),
                     "attention: a query of shape {} for a memory of shape {}: it must be "
                     "(B, Q) = ({}, {})",
                     shape_str(query.shape()), shape_str(memory.values.shape()), B, m_query_size);
        return label("attention", [&] {
            const var scores = transpose(m_kind == attention_kind::additive
                                             ? additive_scores(t, memory, query)
                                             : multiplicative_scores(t, memory, query)); // (B, S)
            const var weights = masked_softmax(scores, memory.mask);
            const var context = sum(reshape(transpose(weights), {S, B, 1}) * memory.values, 0);
            return attention_step{context, weights};
        });
    }

    /// Every parameter, in creation order.
    std::vector<param> params() const
    {
        if (m_kind == attention_kind::additive)
            return {m_key.weight, m_key.bias, m_query, m_score};
        return {m_query};
    }

private:
    void check_memory(const var& memory) const
    {
        UNFOLD_CHECK(memory.dimension() == 3 && memory.shape()[2] == m_memory_size &&
                         memory.shape()[0] > 0 && memory.shape()[1] > 0,
                     "attention: a memory of shape {}: it must be (S, B, E) with E = {} (the "
                     "encoder's output features)",
                     shape_str(memory.shape()), m_memory_size);
    }

    /// (S, B): vᵀ tanh(keys + W_q q) at every position.
    var additive_scores(tape& t, const attention_memory& m, const var& query) const
    {
        const shape_type& k = m.keys.shape();
        const var hidden = tanh(m.keys + matmul_transposed(query, t[m_query])); // (S, B, A)
        return reshape(matmul_transposed(reshape(hidden, {k[0] * k[1], k[2]}), t[m_score]),
                       {k[0], k[1]});
    }

    /// (S, B): m · (W_a q) at every position.
    var multiplicative_scores(tape& t, const attention_memory& m, const var& query) const
    {
        return sum(m.values * matmul_transposed(query, t[m_query]), 2);
    }

    attention_kind m_kind = attention_kind::additive;
    std::size_t m_memory_size = 0;
    std::size_t m_query_size = 0;
    linear m_key;  // additive: W_k, b_k
    param m_query; // additive: W_q (A, Q); multiplicative: W_a (E, Q)
    param m_score; // additive: v as (1, A)
};

} // namespace unfold
