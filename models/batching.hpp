#pragma once
/// Examples (a prompt and its answer) and the padded token batches the decoder trains on.
///
/// Note [Examples as batches]
/// An example (prompt p, answer a) becomes the tokens  `<s>` p₁ … p_m a₁ … a_n `</s>`. The decoder
/// is fed every token but the last and predicts every token but the first; the predictions of
/// prompt tokens carry no loss (their targets are token_batch::ignore_index), so the model is
/// trained, and measured, on writing the answer. Sequences of a batch are padded at the end with
/// `<pad>` inputs and ignored targets. Under free running the decoder feeds its own output exactly
/// where it made a counted prediction: after the prompt (models/decoder.hpp).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <unfold/framework/error.hpp>
#include <unfold/models/decoder.hpp>
#include <unfold/models/vocabulary.hpp>

namespace unfold
{

/// One example: the model reads `<s>` + prompt and must write answer + `</s>`.
struct example
{
    std::string prompt; ///< what the model reads after `<s>`
    std::string answer; ///< what it must write before `</s>`
    /// By prompt, then answer (examples in sets, e.g. a held-out set).
    bool operator<(const example& o) const
    {
        return prompt != o.prompt ? prompt < o.prompt : answer < o.answer;
    }
};

/// A padded batch of examples (Note [Examples as batches]).
inline token_batch make_batch(const vocabulary& v, const std::vector<example>& examples)
{
    UNFOLD_CHECK(!examples.empty(), "make_batch: no examples");
    std::vector<std::vector<std::size_t>> tokens;
    std::vector<std::size_t> prompt_len;
    std::size_t longest = 0;
    for (const auto& e : examples)
    {
        std::vector<std::size_t> seq{vocabulary::bos};
        const auto p = v.encode(e.prompt);
        const auto a = v.encode(e.answer);
        seq.insert(seq.end(), p.begin(), p.end());
        seq.insert(seq.end(), a.begin(), a.end());
        seq.push_back(vocabulary::eos);
        prompt_len.push_back(p.size());
        longest = std::max(longest, seq.size());
        tokens.push_back(std::move(seq));
    }
    token_batch b;
    b.steps = longest - 1;
    b.batch = examples.size();
    b.inputs.assign(b.steps * b.batch, vocabulary::pad);
    b.targets.assign(b.steps * b.batch, token_batch::ignore_index);
    for (std::size_t s = 0; s < b.batch; ++s)
        for (std::size_t k = 0; k + 1 < tokens[s].size(); ++k)
        {
            b.inputs[k * b.batch + s] = tokens[s][k];
            if (k >= prompt_len[s]) // the target tokens[s][k + 1] is past the prompt
                b.targets[k * b.batch + s] = std::int64_t(tokens[s][k + 1]);
        }
    return b;
}

/// A padded batch of examples for an encoder–decoder (models/seq2seq.hpp): the source is each
/// prompt followed by `</s>` (so that an empty prompt still has a position to attend to); the
/// decoder is fed `<s>` a₁ … a_n and must write a₁ … a_n `</s>`, every target counted.
inline token_batch make_seq2seq_batch(const vocabulary& v, const std::vector<example>& examples)
{
    UNFOLD_CHECK(!examples.empty(), "make_seq2seq_batch: no examples");
    std::vector<std::vector<std::size_t>> sources, answers;
    std::size_t longest_source = 0, longest_answer = 0;
    for (const auto& e : examples)
    {
        sources.push_back(v.encode(e.prompt));
        sources.back().push_back(vocabulary::eos);
        answers.push_back(v.encode(e.answer));
        longest_source = std::max(longest_source, sources.back().size());
        longest_answer = std::max(longest_answer, answers.back().size());
    }
    token_batch b;
    b.batch = examples.size();
    b.steps = longest_answer + 1;
    b.inputs.assign(b.steps * b.batch, vocabulary::pad);
    b.targets.assign(b.steps * b.batch, token_batch::ignore_index);
    b.source.steps = longest_source;
    b.source.batch = b.batch;
    b.source.tokens.assign(longest_source * b.batch, vocabulary::pad);
    for (std::size_t s = 0; s < b.batch; ++s)
    {
        b.source.lengths.push_back(sources[s].size());
        for (std::size_t k = 0; k < sources[s].size(); ++k)
            b.source.tokens[k * b.batch + s] = sources[s][k];
        const std::vector<std::size_t>& a = answers[s];
        for (std::size_t k = 0; k <= a.size(); ++k)
        {
            b.inputs[k * b.batch + s] = k == 0 ? vocabulary::bos : a[k - 1];
            b.targets[k * b.batch + s] = std::int64_t(k < a.size() ? a[k] : vocabulary::eos);
        }
    }
    return b;
}

} // namespace unfold
