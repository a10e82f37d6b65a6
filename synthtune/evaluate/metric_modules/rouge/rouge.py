"""ROUGE-1, ROUGE-2, ROUGE-L F-measure (rouge_score, no stemming), mean over pairs, 0-100."""
import datasets
import evaluate

_DESCRIPTION = "rouge_score F-measure of rouge1/rouge2/rougeL per pair, averaged, 0-100; keys rouge_1, rouge_2, rouge_l."


class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description="predictions, references: lists of str",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}))

    def _compute(self, predictions, references):
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
        totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
        for prediction, reference in zip(predictions, references):
            for key, score in scorer.score(reference, prediction).items():
                totals[key] += score.fmeasure
        n = max(len(predictions), 1)
        return {"rouge_1": 100 * totals["rouge1"] / n, "rouge_2": 100 * totals["rouge2"] / n,
                "rouge_l": 100 * totals["rougeL"] / n}
