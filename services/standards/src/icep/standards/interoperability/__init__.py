"""The read side over standards and answers: interoperability verdicts and progress per nation."""
