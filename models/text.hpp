#pragma once
/// Character-level language modelling of any UTF-8 text file (`unfold train --text FILE`, or a
/// training loop of your own over any cell): reading the file, its corpus (vocabulary and 90/10
/// split: training text and held-out text), the parallel streams of truncated BPTT, whose chunks
/// a stateful model reads one after another carrying its state (decoder::carry and resume), the
/// held-out score and the prompt a text model generates from. `unfold train`, `eval` and `sample`
/// use exactly these, so a decoder over a cell of your own trains, scores and samples as theirs do
/// (examples/text_mgu.cpp).
///
/// Note [Held-out text]
/// score_text reads a text of n characters as S = ⌊n / 200⌋ parallel streams (at least 1, at most
/// 16) in chunks of 64 with the state carried from chunk to chunk, as training reads its text, so
/// each character is predicted from everything before it in its stream; nothing is recorded for
/// backward. Every character but a stream's first is a target, except the tail that does not fill
/// a chunk (fewer than 65 per stream, and the n − S·⌊n/S⌋ after the last stream):
/// text_scoring::scored(n) says how many are scored. The loss is their mean cross-entropy in
/// nats; bits per character is that over ln 2.

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include <unfold/framework/error.hpp>
#include <unfold/framework/grad_mode.hpp>
#include <unfold/models/decoder.hpp>
#include <unfold/models/feeding.hpp>
#include <unfold/models/vocabulary.hpp>

namespace unfold
{

/// Reads a whole file; throws unfold::error naming it (and why) when it cannot be read.
inline std::string read_file(const std::string& path)
{
    std::error_code ec;
    UNFOLD_CHECK(!std::filesystem::is_directory(path, ec), "cannot read {}: it is a directory",
                 path);
    std::ifstream in(path, std::ios::binary);
    UNFOLD_CHECK(in.good(), "cannot read {}: {}", path, std::strerror(errno));
    std::ostringstream s;
    s << in.rdbuf();
    UNFOLD_CHECK(!in.bad(), "cannot read {}", path);
    return s.str();
}

/// A character-level corpus: the characters of a UTF-8 file, split 90/10 into training and
/// validation text, with the vocabulary of every character in it.
struct text_corpus
{
    vocabulary vocab;               ///< every character of the file
    std::vector<std::size_t> train; ///< the first 90% of the characters, as ids
    std::vector<std::size_t> valid; ///< the last 10%, held out

    /// Throws unfold::error naming the file when it is unreadable, not UTF-8 or too short.
    static text_corpus load(const std::string& path) { return parse(read_file(path), path); }

    /// The corpus of `bytes`, the contents of a file called `name` (for messages); throws
    /// unfold::error when they are not UTF-8 or too short.
    static text_corpus parse(const std::string& bytes, const std::string& name)
    {
        const std::string& path = name;
        const std::vector<std::string> chars = utf8_chars(bytes, path);
        UNFOLD_CHECK(chars.size() >= 100, "{}: only {} characters; a text needs at least 100", path,
                     chars.size());
        text_corpus c;
        c.vocab = vocabulary::of_text(chars);
        const std::size_t split = chars.size() * 9 / 10;
        for (std::size_t i = 0; i < chars.size(); ++i)
            (i < split ? c.train : c.valid).push_back(c.vocab.id(chars[i]));
        return c;
    }
};

/// `batch` parallel streams over `text` in chunks of `steps` (truncated BPTT): chunk k of stream
/// b covers text[b·L + k·steps, …) with L = |text| / batch. Inputs are the text, targets the next
/// character; every target counts.
class text_stream
{
public:
    /// Streams over `text` (which must outlive this); throws unfold::error when a stream would
    /// not hold one chunk.
    text_stream(const std::vector<std::size_t>& text, std::size_t batch, std::size_t steps)
        : m_text(&text)
        , m_batch(batch)
        , m_steps(steps)
    {
        UNFOLD_CHECK(batch >= 1 && steps >= 1, "text: batch and TBPTT length must be positive");
        m_stream_length = text.size() / batch;
        UNFOLD_CHECK(m_stream_length > steps,
                     "text: {} characters are too few for {} streams of chunks of {}", text.size(),
                     batch, steps);
    }
    /// Chunks per pass over the text.
    std::size_t chunks() const { return (m_stream_length - 1) / m_steps; }
    /// Chunk k (0 ≤ k < chunks()).
    token_batch chunk(std::size_t k) const
    {
        token_batch b;
        b.steps = m_steps;
        b.batch = m_batch;
        b.inputs.resize(m_steps * m_batch);
        b.targets.resize(m_steps * m_batch);
        for (std::size_t t = 0; t < m_steps; ++t)
            for (std::size_t s = 0; s < m_batch; ++s)
            {
                const std::size_t at = s * m_stream_length + k * m_steps + t;
                b.inputs[t * m_batch + s] = (*m_text)[at];
                b.targets[t * m_batch + s] = std::int64_t((*m_text)[at + 1]);
            }
        return b;
    }

private:
    const std::vector<std::size_t>* m_text;
    std::size_t m_batch;
    std::size_t m_steps;
    std::size_t m_stream_length;
};

/// How score_text reads a held-out text (Note [Held-out text]).
struct text_scoring
{
    std::size_t chunk = 64;       ///< characters per chunk
    std::size_t max_streams = 16; ///< parallel streams at most, each of 200 characters at least

    /// The streams for a text of n characters.
    std::size_t streams(std::size_t n) const
    {
        return std::max<std::size_t>(1, std::min(max_streams, n / 200));
    }
    /// How many of n characters are scored.
    std::size_t scored(std::size_t n) const
    {
        const std::size_t s = streams(n), length = n / s;
        return length > chunk ? s * ((length - 1) / chunk) * chunk : 0;
    }
};

/// A character model's score on a text.
struct text_score
{
    double loss = 0;            ///< mean cross-entropy per scored character, in nats
    double bits_per_char = 0;   ///< loss / ln 2
    double next_char = 0;       ///< the fraction of scored characters the model ranks first
    std::size_t characters = 0; ///< how many were scored (text_scoring::scored)
};

/// The score of decoder `d` on `text` (ids of its vocabulary), read as Note [Held-out text] says.
/// Throws unfold::error when `d` is in training mode (dropout would change the score: call eval()
/// first) or the text is shorter than one chunk.
template <class Cell>
text_score score_text(const decoder<Cell>& d, const std::vector<std::size_t>& text,
                      const text_scoring& how = {})
{
    UNFOLD_CHECK(!d.training(),
                 "score_text: the decoder is in training mode, whose dropout would change the "
                 "score; call eval() first");
    no_grad_guard no_grad;
    const text_stream s(text, how.streams(text.size()), how.chunk);
    teacher_forcing teacher;
    typename decoder<Cell>::carried_state carried;
    double nats = 0, right = 0, count = 0;
    for (std::size_t k = 0; k < s.chunks(); ++k)
    {
        const token_batch b = s.chunk(k);
        tape t;
        const auto r = d.run(t, b, teacher, decoder<Cell>::resume(t, carried));
        carried = decoder<Cell>::carry(r.final_state);
        nats += sequence_loss(r, b).item() * double(b.targets.size());
        for (std::size_t step = 0; step < b.steps; ++step)
        {
            const auto guess = choose_tokens(r.logits[step].value(), token_choice::greedy);
            for (std::size_t j = 0; j < b.batch; ++j)
                right += std::int64_t(guess[j]) == b.target(step, j);
        }
        count += double(b.targets.size());
    }
    text_score out;
    out.characters = std::size_t(count);
    out.loss = count ? nats / count : 0;
    out.bits_per_char = out.loss / std::log(2.0);
    out.next_char = count ? right / count : 0;
    return out;
}

/// The ids a text model over `vocab` starts generating from: the characters of `prompt`, or,
/// when it is empty, a line break (or a space if the text has no line break, else its first
/// character), as a new line of the text would start. Throws unfold::error naming `name` and a
/// character the vocabulary lacks.
inline std::vector<std::size_t> text_prompt(const vocabulary& vocab, const std::string& prompt,
                                            const std::string& name = "prompt")
{
    std::vector<std::size_t> ids = vocab.encode(prompt, name);
    for (const std::string c : {"\n", " "})
        if (ids.empty() && vocab.contains(c))
            ids.push_back(vocab.id(c));
    if (ids.empty())
        ids.push_back(vocabulary::eos + 1);
    return ids;
}

} // namespace unfold
