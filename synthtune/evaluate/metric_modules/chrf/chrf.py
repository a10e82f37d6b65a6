"""Corpus chrF with sacrebleu (character n-grams up to 6, beta 2), 0-100. Offline, local module."""
import datasets
import evaluate

_DESCRIPTION = "sacrebleu corpus chrF (char_order 6, word_order 0, beta 2), 0-100."


class Chrf(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description="predictions, references: lists of str",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}))

    def _compute(self, predictions, references):
        import sacrebleu

        if not predictions:
            return {"chrf": 0.0}
        return {"chrf": float(sacrebleu.corpus_chrf(list(predictions), [list(references)]).score)}
