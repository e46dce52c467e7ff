"""A Mist-era Spark Streaming (DStream) function, as Mist's own examples wrote them."""

from mistpy.decorators import arg, on_streaming_context, with_args


@with_args(arg("per_batch", type_hint=int, default=100))
@on_streaming_context
def mist_stream(ssc, per_batch):
    numbers = ssc.sparkContext.parallelize(range(per_batch), 2)
    # One batch of numbers per streamingDuration, for ever.
    stream = ssc.queueStream([numbers], default=numbers)
    counts = stream.map(lambda x: (x % 3, 1)).reduceByKey(lambda a, b: a + b)
    counts.foreachRDD(lambda time, rdd: print(time, sorted(rdd.collect())))
    ssc.start()
    ssc.awaitTermination()
