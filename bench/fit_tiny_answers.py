"""Write a tiny checkpoint that answers like a trained model: `python -m bench.fit_tiny_answers TINY OUT`.

TINY is a checkpoint from `python -m aqa tiny`; OUT gets a copy fine-tuned (seconds, on the CPU) to answer the bench's
question with its first option and stop, so `aqa bench --model OUT` measures answer mode as R1-AQA behaves, where the
answer is read off the scoring pass, rather than the token-by-token gibberish of random weights. The fitting itself is
the tests' fixture (tests/answering_model.py); run this from the repository's root.
"""

import sys

from tests.answering_model import fit_tiny_answers

if __name__ == "__main__":
    print(fit_tiny_answers(sys.argv[1], sys.argv[2]))
